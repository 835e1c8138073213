"""Low false-positive rates, honestly: thresholds from known non-members, exact intervals, an ε estimate.

An attack's threshold for a target FPR is set on the calibration set, known non-members that
neither the victim nor any shadow trained on (so every model treats them exactly as it treats
the victim's holdout): the rule `score >= threshold` accuses at most ⌊target · m⌋ of its m
samples. TPR and FPR are then measured on the victim's evaluation set at that threshold, with
exact (Clopper–Pearson) intervals, because a rate of a few percent from a few hundred samples
is far from normal.

The ε estimate follows Jagielski, Ullman, Oprea (NeurIPS 2020) and Nasr et al. (S&P 2021): an
(ε, δ)-DP training algorithm bounds every test's TPR ≤ e^ε · FPR + δ, so

    ε ≥ ln((TPR_low − δ) / FPR_high)

with one-sided Clopper–Pearson bounds. It rests on an assumption the gate cannot make true:
that membership was random. Members and holdout come from one training run with a fixed-size
split, so it is the one-run audit of Steinke, Nasr and Jagielski (NeurIPS 2023) read loosely,
and it is reported as an estimate, never gated.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta

from gates.result import CalibratedRate

NAN = float("nan")


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval of a binomial proportion; (0, 1) when there are no trials."""
    tail = (1.0 - confidence) / 2
    return lower_bound(successes, trials, tail), upper_bound(successes, trials, tail)


def lower_bound(successes: int, trials: int, alpha: float) -> float:
    """One-sided Clopper–Pearson lower bound at level 1 − alpha."""
    if trials <= 0 or successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def upper_bound(successes: int, trials: int, alpha: float) -> float:
    """One-sided Clopper–Pearson upper bound at level 1 − alpha."""
    if trials <= 0 or successes == trials:
        return 1.0
    return float(beta.ppf(1 - alpha, successes + 1, trials - successes))


def calibrated_threshold(calibration_scores: ArrayLike, target_fpr: float) -> float:
    """The lowest threshold at which `score >= threshold` accuses at most ⌊target · m⌋ calibration samples.

    Just above the (k+1)-th highest score (k the allowed false positives), so ties at that score
    are all spared: the calibration FPR never exceeds the target. NaN when a score is not finite.
    """
    scores = np.asarray(calibration_scores, dtype=np.float64)
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        return NAN
    allowed = int(math.floor(target_fpr * scores.size + 1e-9))
    if allowed >= scores.size:
        return float(-np.inf)
    descending = np.sort(scores)[::-1]
    return float(np.nextafter(descending[allowed], np.inf))


def calibrated_rate(
    scores: ArrayLike, membership: ArrayLike, calibration_scores: ArrayLike, target_fpr: float, *, resolvable: bool
) -> CalibratedRate:
    """TPR and FPR on the evaluation set at the calibration threshold for `target_fpr`, with 95% exact intervals."""
    s = np.asarray(scores, dtype=np.float64)
    mask = np.asarray(membership) == 1
    calibration = np.asarray(calibration_scores, dtype=np.float64)
    threshold = calibrated_threshold(calibration, target_fpr)
    n_members, n_nonmembers = int(mask.sum()), int((~mask).sum())
    if math.isnan(threshold) or not np.all(np.isfinite(s)):
        return CalibratedRate(target_fpr, threshold, NAN, resolvable, NAN, NAN, NAN, 0, n_members, NAN, NAN, NAN, 0, n_nonmembers)
    accused = s >= threshold
    tp, fp = int(accused[mask].sum()), int(accused[~mask].sum())
    tpr_low, tpr_high = clopper_pearson(tp, n_members)
    fpr_low, fpr_high = clopper_pearson(fp, n_nonmembers)
    return CalibratedRate(
        target_fpr=target_fpr,
        threshold=threshold,
        calibration_fpr=float(np.mean(calibration >= threshold)),
        resolvable=resolvable,
        tpr=tp / n_members,
        tpr_low=tpr_low,
        tpr_high=tpr_high,
        true_positives=tp,
        n_members=n_members,
        fpr=fp / n_nonmembers,
        fpr_low=fpr_low,
        fpr_high=fpr_high,
        false_positives=fp,
        n_nonmembers=n_nonmembers,
    )


def epsilon_lower_bound(rate: CalibratedRate, *, alpha: float, delta: float) -> float:
    """ε ≥ ln((TPR_low − δ) / FPR_high) at one-sided level 1 − alpha each (0 when the bound says nothing)."""
    if not math.isfinite(rate.tpr):
        return NAN
    tpr_low = lower_bound(rate.true_positives, rate.n_members, alpha)
    fpr_high = upper_bound(rate.false_positives, rate.n_nonmembers, alpha)
    if tpr_low - delta <= fpr_high:
        return 0.0
    return float(math.log((tpr_low - delta) / fpr_high))
