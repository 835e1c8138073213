"""What the gate measured and decided: frozen results, JSON-safe through `to_dict()`.

Members are coded 1 everywhere. Scores are "higher = more likely a member".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AttackMetrics:
    """One attack against one model, on the victim's balanced evaluation set.

    `threshold` was chosen on shadow data only; `tpr`, `fpr`, `accuracy` and `advantage` are
    measured at it. `best_advantage` is the optimistic maximum over every threshold (it peeks at
    the evaluation labels, so it is reported, never gated). The low-FPR figures carry the FPR the
    evaluation set actually achieved, which can be 0 when it has too few non-members.
    `threshold_source` says how the shadow data set the threshold (e.g. per class, where the
    score is then shifted so that 0 is every class's threshold).
    """

    attack: str
    threshold: float
    accuracy: float
    tpr: float
    fpr: float
    advantage: float
    advantage_low: float
    advantage_high: float
    best_advantage: float
    auc: float
    tpr_at_1pct_fpr: float
    achieved_fpr_1pct: float
    tpr_at_01pct_fpr: float
    achieved_fpr_01pct: float
    n_members: int
    n_nonmembers: int
    threshold_source: str = "shadow data"

    @property
    def is_finite(self) -> bool:
        return all(
            math.isfinite(v)
            for v in (self.accuracy, self.advantage, self.advantage_low, self.advantage_high, self.auc)
        )

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


@dataclass(frozen=True, eq=False)
class ModelAudit:
    """Every attack against one victim model ("original" or "pruned").

    `scores[attack]` are the per-sample scores on the evaluation set, aligned with `membership`
    (kept for the ROC plot; not written to JSON).
    """

    model: str
    holdout_accuracy: float
    attacks: tuple[AttackMetrics, ...]
    scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    membership: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)

    def metrics(self, attack: str) -> AttackMetrics:
        for metrics in self.attacks:
            if metrics.attack == attack:
                return metrics
        raise KeyError(attack)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "holdout_accuracy": _json_safe(self.holdout_accuracy),
            "attacks": [m.to_dict() for m in self.attacks],
        }


@dataclass(frozen=True)
class ShadowSummary:
    """One shadow replica of the victim's recipe: its data sizes, seed and accuracy."""

    index: int
    seed: int
    n_members: int
    n_dev: int
    n_nonmembers: int
    base_accuracy: float
    pruned_accuracy: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


VERDICT_LABELS: dict[str, str] = {"pass": "PASSED", "fail": "FAILED", "error": "NOT PASSED (error)"}
"""How every report and summary spells a verdict (`GateResult.verdict`)."""


@dataclass(frozen=True, eq=False)
class GateResult:
    """The verdict and its evidence.

    `verdict` is "pass", "fail" (leakage above the threshold) or "error" (the gate could not
    establish that leakage is below it: fail closed). `passed` is true only for "pass".
    `gated_value` is what was compared with `max_advantage`: the deciding attack's advantage at
    its shadow-chosen threshold, or the upper end of its 95% interval in strict mode.
    `resolution` is the worst-case half-width of a 95% interval on the advantage at this
    evaluation size: differences finer than it cannot be told apart from noise.
    """

    verdict: str
    reason: str
    max_advantage: float
    strict: bool
    gated_attacks: tuple[str, ...]
    deciding_attack: str | None
    gated_value: float | None
    resolution: float
    warnings: tuple[str, ...]
    pruned: ModelAudit | None
    original: ModelAudit | None
    shadows: tuple[ShadowSummary, ...]
    n_members: int
    n_nonmembers: int
    seed: int
    settings: dict[str, Any]
    seconds: dict[str, float]
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "passed": self.passed,
            "reason": self.reason,
            "max_advantage": self.max_advantage,
            "strict": self.strict,
            "gated_attacks": list(self.gated_attacks),
            "deciding_attack": self.deciding_attack,
            "gated_value": _json_safe(self.gated_value),
            "resolution": _json_safe(self.resolution),
            "warnings": list(self.warnings),
            "evaluation": {"n_members": self.n_members, "n_nonmembers": self.n_nonmembers, "seed": self.seed},
            "pruned": self.pruned.to_dict() if self.pruned else None,
            "original": self.original.to_dict() if self.original else None,
            "shadows": [s.to_dict() for s in self.shadows],
            "settings": _json_safe(self.settings),
            "seconds": _json_safe(self.seconds),
            "error": self.error,
        }


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None: JSON has no NaN, and a missing figure must read as missing."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
