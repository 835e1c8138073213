"""What the gate measured and decided: frozen results, JSON-safe through `to_dict()`.

Members are coded 1 everywhere. Scores are "higher = more likely a member".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CalibratedRate:
    """One attack at the threshold the calibration set sets for `target_fpr` (see `gates.calibration`).

    `calibration_fpr` is what the threshold accuses on the calibration set (<= target); `tpr` and
    `fpr` are measured on the victim's evaluation members and non-members, with 95% Clopper–Pearson
    intervals. `resolvable` says whether both sets are large enough for this rate to mean anything
    (10 expected false positives each). `epsilon` is the empirical ε estimate at this threshold
    (Bonferroni-corrected over every attack and threshold of the audit).
    """

    target_fpr: float
    threshold: float
    calibration_fpr: float
    resolvable: bool
    tpr: float
    tpr_low: float
    tpr_high: float
    true_positives: int
    n_members: int
    fpr: float
    fpr_low: float
    fpr_high: float
    false_positives: int
    n_nonmembers: int
    epsilon: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


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
    calibrated: tuple[CalibratedRate, ...] = ()
    epsilon: float = float("nan")
    """The largest ε estimate over `calibrated` (NaN when there is none)."""

    def rate(self, target_fpr: float) -> CalibratedRate | None:
        """The calibrated figures at `target_fpr`, if measured."""
        for rate in self.calibrated:
            if math.isclose(rate.target_fpr, target_fpr):
                return rate
        return None

    @property
    def is_finite(self) -> bool:
        return all(
            math.isfinite(v)
            for v in (self.accuracy, self.advantage, self.advantage_low, self.advantage_high, self.auc)
        )

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


@dataclass(frozen=True)
class ClassExposure:
    """One attack's figures on one class of the evaluation set (per-class exposure).

    `advantage` is at the attack's advantage threshold, with its 95% interval; `tpr` at the
    calibration threshold for the criterion's FPR, with its 95% Clopper–Pearson interval and the FPR
    achieved. The p-values test "this class is within the limit" (one-sided); `judged` says the
    class has `per_class_min` samples per side; `exceeds` names the criteria it fails.
    """

    attack: str
    label: int
    n_members: int
    n_nonmembers: int
    advantage: float
    advantage_low: float
    advantage_high: float
    advantage_p: float
    tpr: float
    tpr_low: float
    tpr_high: float
    fpr: float
    tpr_p: float
    judged: bool
    exceeds: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


CRITERIA: dict[str, str] = {
    "advantage": "advantage (TPR - FPR) at the attack's threshold",
    "tpr_at_fpr": "TPR at the target FPR (calibration threshold)",
    "per_class": "every class within both limits",
}
"""The gate's criteria, by name, as the reports title them."""


@dataclass(frozen=True)
class Criterion:
    """One criterion's outcome: "pass", "fail", "error", "not resolvable" (reported, not gated) or "off"."""

    name: str
    status: str
    limit: float | None
    value: float | None
    deciding_attack: str | None
    reason: str

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


@dataclass(frozen=True)
class UnitTiming:
    """Where and when one of the gate's units ran: what `report.json`'s `timeline` lists, to see how
    the work spread over the workers (idle workers, a long tail, each worker's start-up)."""

    stage: str
    """"preparation" (WeMem's helper models), "models" (shadow pipelines, victim readings) or "attacks"."""
    unit: str
    worker: str
    """`host:pid` of the process that ran it."""
    start: float
    """Seconds from the gate's start to the unit's, on the worker's clock (on a cluster, nodes' clocks may differ)."""
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
    criteria: tuple[Criterion, ...] = ()
    target_fpr: float = 0.01
    epsilon: float | None = None
    """The audit's ε estimate on the pruned model: the largest over its attacks and thresholds."""
    per_class: tuple[ClassExposure, ...] = ()
    calibration_size: int = 0
    threshold_pairs: int = 0
    timeline: tuple[UnitTiming, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def criterion(self, name: str) -> Criterion | None:
        return next((c for c in self.criteria if c.name == name), None)

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
            "criteria": [c.to_dict() for c in self.criteria],
            "target_fpr": self.target_fpr,
            "epsilon": _json_safe(self.epsilon),
            "per_class": [e.to_dict() for e in self.per_class],
            "calibration": {"size": self.calibration_size, "threshold_pairs": self.threshold_pairs},
            "timeline": [timing.to_dict() for timing in self.timeline],
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
