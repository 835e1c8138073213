"""Offline LiRA with a fixed variance (Carlini, Chien, Nasr, Song, Terzis, Tramèr, S&P 2022).

The signal is the logit-scaled confidence φ = log(p_y / (1 − p_y)), which makes a model's
confidence on a sample roughly Gaussian across models. Offline, only OUT reference models exist:
a member is a sample the audited model is more confident on than models that never saw it, so

    score(x) = (φ(x; θ) − μ_out(x)) / σ_out

with μ_out(x) the mean over the OUT references and σ_out one standard deviation pooled over
every sample and reference (with few reference models a per-sample variance is mostly noise,
which is why the paper fixes it). σ_out is pooled on the calibration slice (the population:
known non-members, OUT for every model), shadow data only. It does not change the ranking; it
puts the score on a z-scale. With one reference, the spread of φ across the population stands
in for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gates.attacks.base import AttackContext
from gates.lazy import numpy as np

if TYPE_CHECKING:
    from gates.references import PseudoTarget, ReferenceSignals


class LiraAttack:
    """Offline, fixed-variance LiRA on the logit-scaled true-class confidence, the shadows as OUT references."""

    name = "lira"
    summary = "offline LiRA: logit confidence against OUT reference models, fixed variance (Carlini et al. 2022)"
    Settings = None
    uses_references = True
    threshold_source = "auditor split"

    def __init__(self, settings: Any = None, context: AttackContext | None = None) -> None:
        self.threshold = float("nan")
        self.sigma = float("nan")

    def fit(self, pseudo_targets: Sequence[PseudoTarget], population: ReferenceSignals) -> None:
        logits = population.reference_logit
        counted = np.sum(~np.isnan(logits), axis=1)
        residual = logits - population.out_mean(logits)[:, None]
        freedom = int(np.sum(np.maximum(counted - 1, 0)))
        if freedom > 0:
            sigma = float(np.sqrt(np.nansum(residual**2) / freedom))
        else:
            sigma = float(np.nanstd(logits)) if np.any(counted) else float("nan")
        self.sigma = sigma if np.isfinite(sigma) and sigma > 0 else float("nan")

    def score(self, samples: ReferenceSignals, population: ReferenceSignals) -> Any:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (samples.logit - samples.out_mean(samples.reference_logit)) / self.sigma
