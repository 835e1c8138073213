"""Offline RMIA: the relative membership inference attack (Zarifzadeh, Liu, Cheng, Shokri, ICML 2024).

With s(x; θ) the audited model's probability of the true label and the reference models all
OUT for x (none trained on it), the offline attack approximates the probability of x under a
random model (half IN, half OUT) by

    P(x) = (1 + a)/2 · mean over OUT references of s(x; θ_ref) + (1 − a)/2

and compares x with a population of known non-members z:

    LR(x, z) = [s(x; θ) / P(x)] / [s(z; θ) / P(z)],   score(x) = fraction of z with LR(x, z) > γ.

A member is more likely under its own model than the references predict, *relative to* typical
non-members, so its score is high. The score is computed by sorting the population's ratios
once and counting with `searchsorted`: no n × m matrix (20k × 24k doubles would be 3.8 GB).
The population is the gate's calibration slice; a population sample scored against it is not
compared with itself.

`a` corrects for OUT-only references (they under-predict what an IN model would say). It is
chosen on shadow data only: each shadow in turn plays the victim, its own members and
non-members are scored with the other shadows that are OUT for each sample as references and the
calibration slice under it as the population, and the `a` of the grid 0, 0.05, …, 1 with the
best mean AUC over those pseudo-targets is kept (ties: the median of the tied values). With one
shadow there is no pseudo-target that has a reference, and `a` = 0.5, the middle of its range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gates.attacks.base import AttackContext
from gates.lazy import numpy as np
from gates.settings import above, setting, within

if TYPE_CHECKING:
    from gates.references import PseudoTarget, ReferenceSignals

A_GRID_STEPS = 21
FALLBACK_A = 0.5


@dataclass(frozen=True)
class RmiaSettings:
    rmia_gamma: float = setting(1.0, help="rmia: a population sample counts when the likelihood ratio exceeds this (> 0)", rule=above(0))
    rmia_offline_a: float | None = setting(
        None,
        help="rmia: the offline correction a in [0, 1]; unset: chosen on shadow data (best mean AUC with shadows as pseudo-victims)",
        rule=within(0, 1),
        example=0.3,
    )


class RmiaAttack:
    """Offline RMIA on the true-class probability, the shadows as OUT references."""

    name = "rmia"
    summary = "offline RMIA: likelihood ratio against OUT reference models and a population (Zarifzadeh et al. 2024)"
    Settings = RmiaSettings
    uses_references = True
    threshold_source = "auditor split"

    def __init__(self, settings: RmiaSettings | None = None, context: AttackContext | None = None) -> None:
        self.settings = settings if settings is not None else RmiaSettings()
        self.threshold = float("nan")
        self.a = float("nan")
        self.a_source = "unset"
        self.a_auc: dict[float, float] = {}

    def fit(self, pseudo_targets: Sequence[PseudoTarget], population: ReferenceSignals) -> None:
        """Choose `a` (unless the settings fix it) on shadows playing the victim; see the module docstring."""
        from gates import metrics

        if self.settings.rmia_offline_a is not None:
            self.a, self.a_source = float(self.settings.rmia_offline_a), "recipe"
            return
        usable = []
        for target in pseudo_targets:
            keep = target.samples.out_count > 0
            m = target.membership[keep]
            if m.size and 0 < m.sum() < m.size:
                usable.append((target.samples.subset(np.flatnonzero(keep)), m, target.population))
        if not usable:
            self.a, self.a_source = FALLBACK_A, "fallback (no shadow had an OUT reference to tune it on)"
            return
        grid = np.linspace(0.0, 1.0, A_GRID_STEPS)
        mean_auc = []
        for a in grid:
            aucs = [metrics.auc(self._scores(samples, pop, float(a)), m) for samples, m, pop in usable]
            mean_auc.append(float(np.mean(aucs)))
        self.a_auc = {round(float(a), 4): auc for a, auc in zip(grid, mean_auc)}
        values = np.array(mean_auc)
        if not np.all(np.isfinite(values)):
            self.a, self.a_source = float("nan"), "shadow data (non-finite signals)"
            return
        best = np.flatnonzero(values == values.max())
        self.a = float(grid[best[(best.size - 1) // 2]])
        self.a_source = f"shadow data ({len(usable)} pseudo-victims)"

    def score(self, samples: ReferenceSignals, population: ReferenceSignals) -> Any:
        if not np.isfinite(self.a):
            return np.full(len(samples), np.nan)
        return self._scores(samples, population, self.a)

    def _scores(self, samples: ReferenceSignals, population: ReferenceSignals, a: float) -> Any:
        gamma = self.settings.rmia_gamma
        ratio = _ratio(samples, a)
        reference = _ratio(population, a)
        if not np.all(np.isfinite(reference)):
            return np.full(len(samples), np.nan)  # fail closed: a broken population poisons every score
        ordered = np.sort(reference)
        counts = np.searchsorted(ordered, ratio / gamma, side="left").astype(np.float64)
        itself = np.isin(samples.indices, population.indices)
        if gamma < 1:
            counts -= itself  # a sample's ratio is below its own ratio / γ: it must not count itself
        scores = counts / (len(ordered) - itself)
        return np.where(np.isfinite(ratio), scores, np.nan)


def _ratio(signals: ReferenceSignals, a: float) -> Any:
    """s(x; θ) / P(x); NaN where x has no OUT reference or a signal is not finite."""
    prior = (1.0 + a) / 2.0 * signals.out_mean(signals.reference_confidence) + (1.0 - a) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return signals.confidence / prior
