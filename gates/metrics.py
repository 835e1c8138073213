"""Membership-inference metrics: pure functions of (scores, membership[, threshold]).

Conventions, everywhere in the gate: members are coded 1, non-members 0; a higher score means
"more likely a member"; a sample is predicted a member iff `score >= threshold`.

Fail closed: if any score (or the threshold) is NaN or infinite, every figure derived from it is
NaN. Samples are never dropped silently, because a model that emits NaN for some inputs must not
pass the gate on the inputs that happened to stay finite. The gate reads NaN as "not passed".

Malformed inputs (different lengths, a membership value other than 0/1, no member or no
non-member) raise `ValueError`: those are bugs in the caller, not properties of the model.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from gates.result import AttackMetrics

NAN = float("nan")


def _validate(scores: ArrayLike, membership: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and membership as a bool mask (True = member), after the checks above."""
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(membership)
    if s.ndim != 1 or m.ndim != 1:
        raise ValueError(f"scores and membership must be 1-D arrays, got shapes {s.shape} and {m.shape}")
    if s.shape != m.shape:
        raise ValueError(f"scores and membership must have the same length, got {s.size} and {m.size}")
    if m.dtype == np.bool_:
        mask = m
    else:
        if not np.all((m == 0) | (m == 1)):
            bad = np.unique(m[(m != 0) & (m != 1)])[:5]
            raise ValueError(f"membership must contain only 0 (non-member) and 1 (member), found {bad.tolist()}")
        mask = m == 1
    n_members = int(mask.sum())
    if n_members == 0 or n_members == mask.size:
        raise ValueError(
            f"membership needs at least one member and one non-member, got {n_members} members of {mask.size} samples"
        )
    return s, mask


def _finite(scores: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(scores)))


def rates(scores: ArrayLike, membership: ArrayLike, threshold: float) -> tuple[float, float]:
    """(TPR, FPR) of the rule `score >= threshold`: members caught, non-members falsely accused."""
    s, mask = _validate(scores, membership)
    t = float(threshold)  # ±inf are legitimate rules ("no one" / "everyone"); NaN is not
    if not _finite(s) or math.isnan(t):
        return NAN, NAN
    predicted = s >= t
    return float(predicted[mask].mean()), float(predicted[~mask].mean())


def attack_accuracy(scores: ArrayLike, membership: ArrayLike, threshold: float) -> float:
    """Fraction of samples whose membership the rule guesses right.

    On the gate's balanced evaluation sets this equals (TPR + 1 − FPR) / 2 = (1 + advantage) / 2,
    the figure the papers report; on an unbalanced set it is the plain fraction correct.
    """
    s, mask = _validate(scores, membership)
    t = float(threshold)
    if not _finite(s) or math.isnan(t):
        return NAN
    return float(((s >= t) == mask).mean())


def advantage(scores: ArrayLike, membership: ArrayLike, threshold: float) -> float:
    """TPR − FPR (Yeom et al. 2018): 0 for guessing, 1 for a perfect attack, negative when inverted."""
    tpr, fpr = rates(scores, membership, threshold)
    return tpr - fpr


def bootstrap_advantage_interval(
    scores: ArrayLike,
    membership: ArrayLike,
    threshold: float,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the advantage at a fixed threshold.

    Members and non-members are resampled separately (the evaluation set's design fixes how many
    of each there are). At a fixed threshold each sample is a Bernoulli "predicted member", so the
    count of predicted members in a with-replacement resample of n members is exactly
    Binomial(n, TPR): drawing those counts is the stratified bootstrap, without materialising a
    resamples × n index matrix (1000 × 20k samples would be 160 MB). Deterministic under `seed`.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s, mask = _validate(scores, membership)
    tpr, fpr = rates(s, mask, threshold)
    if math.isnan(tpr) or math.isnan(fpr):
        return NAN, NAN
    n_members, n_nonmembers = int(mask.sum()), int((~mask).sum())
    rng = np.random.default_rng(seed)
    tpr_b = rng.binomial(n_members, tpr, size=resamples) / n_members
    fpr_b = rng.binomial(n_nonmembers, fpr, size=resamples) / n_nonmembers
    alpha = 1.0 - confidence
    low, high = np.quantile(tpr_b - fpr_b, [alpha / 2, 1.0 - alpha / 2])
    return float(low), float(high)


def _threshold_sweep(s: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct rule `score >= t`, from "everyone" to "no one".

    Returns (candidate thresholds, members caught, non-members accused), counts as int64, one
    entry per candidate, ascending in threshold: below the minimum, at each midpoint between
    adjacent distinct scores, and above the maximum. Midpoints rather than observed scores, so a
    threshold learned on shadow data does not sit exactly on a shadow sample.
    """
    values = np.unique(s)  # sorted ascending
    position = np.searchsorted(values, s)
    members_at = np.bincount(position[mask], minlength=values.size)
    nonmembers_at = np.bincount(position[~mask], minlength=values.size)
    # candidate k < values.size predicts "member" for scores >= values[k]; the last predicts no one
    caught = np.append(np.cumsum(members_at[::-1])[::-1], 0)
    accused = np.append(np.cumsum(nonmembers_at[::-1])[::-1], 0)
    margin = max(float(values[-1] - values[0]), 1.0)
    low, high = values[:-1], values[1:]
    middle = low + (high - low) / 2
    middle = np.where(middle > low, middle, high)  # adjacent floats: the midpoint may round down onto `low`
    thresholds = np.concatenate(([values[0] - margin], middle, [values[-1] + margin]))
    return thresholds, caught, accused


def _rates_and_gain(s: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, TPR, FPR, n0·caught − n1·accused): the last ∝ TPR − FPR in exact integers, so ties are real ties."""
    thresholds, caught, accused = _threshold_sweep(s, mask)
    n_members, n_nonmembers = int(mask.sum()), int((~mask).sum())
    gain = caught * n_nonmembers - accused * n_members
    return thresholds, caught / n_members, accused / n_nonmembers, gain


def best_threshold(scores: ArrayLike, membership: ArrayLike) -> float:
    """The threshold that maximises TPR − FPR on these (shadow) samples.

    Placed at the midpoint between adjacent distinct scores, below the minimum ("everyone") or
    above the maximum ("no one"). When several thresholds reach the maximum (compared exactly,
    not in floating point), the median of them (the lower median for an even count) is chosen:
    deterministic, and away from the edges of the optimal range. NaN when any score is not finite.
    """
    s, mask = _validate(scores, membership)
    if not _finite(s):
        return NAN
    thresholds, _, _, gain = _rates_and_gain(s, mask)
    best = np.flatnonzero(gain == gain.max())
    return float(thresholds[best[(best.size - 1) // 2]])


def best_advantage(scores: ArrayLike, membership: ArrayLike) -> float:
    """Max of TPR − FPR over every threshold (>= 0: "everyone" and "no one" both score 0).

    Optimistic: it picks the threshold with the very labels it is measured on. Reported, never gated.
    """
    s, mask = _validate(scores, membership)
    if not _finite(s):
        return NAN
    _, tpr, fpr, gain = _rates_and_gain(s, mask)
    k = int(np.argmax(gain))
    return float(tpr[k] - fpr[k])


def auc(scores: ArrayLike, membership: ArrayLike) -> float:
    """ROC AUC: the probability that a random member outscores a random non-member, ties counting half.

    Computed as the Mann-Whitney U statistic with average ranks, which is exactly that probability.
    """
    s, mask = _validate(scores, membership)
    if not _finite(s):
        return NAN
    ranks = _average_ranks(s)
    n_members, n_nonmembers = int(mask.sum()), int((~mask).sum())
    u = ranks[mask].sum() - n_members * (n_members + 1) / 2
    return float(u / (n_members * n_nonmembers))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    starts = ends - counts + 1
    return ((starts + ends) / 2.0)[inverse]


def roc_curve(scores: ArrayLike, membership: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, from (0, 0) ("no one") to (1, 1) ("everyone").

    Both arrays are non-decreasing; one point per distinct score plus the origin. All-NaN single
    points when a score is not finite, so a plot shows nothing rather than a made-up curve.
    """
    s, mask = _validate(scores, membership)
    if not _finite(s):
        return np.array([NAN]), np.array([NAN])
    _, tpr, fpr, _ = _rates_and_gain(s, mask)
    return fpr[::-1].copy(), tpr[::-1].copy()


def tpr_at_fpr(scores: ArrayLike, membership: ArrayLike, target_fpr: float) -> tuple[float, float]:
    """(highest TPR among thresholds whose FPR <= target, the FPR actually achieved there).

    With n non-members the smallest non-zero FPR is 1/n: at 50 non-members a 0.1% target can only
    be met at FPR 0, and the figure says so instead of pretending to measure 0.1%. Among
    thresholds with that TPR the one with the lowest FPR is reported.
    """
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    s, mask = _validate(scores, membership)
    if not _finite(s):
        return NAN, NAN
    _, tpr, fpr, _ = _rates_and_gain(s, mask)
    allowed = fpr <= target_fpr  # never empty: "no one" has FPR 0
    best_tpr = tpr[allowed].max()
    achieved = fpr[allowed & (tpr == best_tpr)].min()
    return float(best_tpr), float(achieved)


def resolution(n_members: int, n_nonmembers: int, confidence: float = 0.95) -> float:
    """Worst-case half-width of the advantage's confidence interval: z · sqrt(0.25/n1 + 0.25/n0).

    TPR and FPR are proportions whose variance p(1−p)/n is largest at p = 1/2; the advantage is
    their difference. Differences in advantage finer than this cannot be told apart from noise at
    this evaluation size: about 0.065 at 450 per side, 0.014 at 10,000.
    """
    if n_members < 1 or n_nonmembers < 1:
        raise ValueError(f"resolution needs at least one member and one non-member, got {n_members} and {n_nonmembers}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return z * math.sqrt(0.25 / n_members + 0.25 / n_nonmembers)


def evaluate_attack(
    name: str,
    scores: ArrayLike,
    membership: ArrayLike,
    threshold: float,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> AttackMetrics:
    """Every figure the gate reports for one attack, at its shadow-chosen `threshold`.

    Non-finite scores or threshold make every float figure NaN (fail closed), sizes stay exact.
    """
    s, mask = _validate(scores, membership)
    n_members, n_nonmembers = int(mask.sum()), int((~mask).sum())
    t = float(threshold)
    if not _finite(s) or math.isnan(t):
        return AttackMetrics(
            attack=name,
            threshold=t,
            accuracy=NAN,
            tpr=NAN,
            fpr=NAN,
            advantage=NAN,
            advantage_low=NAN,
            advantage_high=NAN,
            best_advantage=NAN,
            auc=NAN,
            tpr_at_1pct_fpr=NAN,
            achieved_fpr_1pct=NAN,
            tpr_at_01pct_fpr=NAN,
            achieved_fpr_01pct=NAN,
            n_members=n_members,
            n_nonmembers=n_nonmembers,
        )
    tpr, fpr = rates(s, mask, t)
    low, high = bootstrap_advantage_interval(s, mask, t, resamples=resamples, seed=seed)
    tpr_1, fpr_1 = tpr_at_fpr(s, mask, 0.01)
    tpr_01, fpr_01 = tpr_at_fpr(s, mask, 0.001)
    return AttackMetrics(
        attack=name,
        threshold=t,
        accuracy=attack_accuracy(s, mask, t),
        tpr=tpr,
        fpr=fpr,
        advantage=tpr - fpr,
        advantage_low=low,
        advantage_high=high,
        best_advantage=best_advantage(s, mask),
        auc=auc(s, mask),
        tpr_at_1pct_fpr=tpr_1,
        achieved_fpr_1pct=fpr_1,
        tpr_at_01pct_fpr=tpr_01,
        achieved_fpr_01pct=fpr_01,
        n_members=n_members,
        n_nonmembers=n_nonmembers,
    )
