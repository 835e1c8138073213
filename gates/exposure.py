"""Per-class exposure: which classes an attack picks out, and whether any exceeds the gate's limits.

An attack can be near chance on average and still expose one class: the rare class a model
memorises, or the one whose members it fits far better than its holdout. Each class of the
evaluation set is measured on its own, at the same thresholds as the whole set.

Deciding per class tests many small sets, and noise alone would fail some. So:

- default: a class fails a criterion only with evidence that it exceeds the limit: one-sided
  tests of "within the limit" (a z-test for the advantage, an exact binomial test for the TPR),
  Holm–Bonferroni across every judged class and criterion at 5%, which keeps the chance that
  noise fails any class below 5%;
- strict mode: the gate passes only with evidence that every class is within: each judged
  class's upper 95% bound must be. That is an intersection-union test, which holds its 95% level
  without a multiplicity correction (and every extra class can only make it fail more often).

Only classes with at least `per_class_min` samples per side are judged; the others are reported.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom, norm

from gates.calibration import clopper_pearson
from gates.metrics import bootstrap_advantage_interval
from gates.result import ClassExposure

ALPHA = 0.05


def class_exposure(
    attack: str,
    scores: np.ndarray,
    membership: np.ndarray,
    labels: np.ndarray,
    *,
    advantage_threshold: float,
    tpr_threshold: float,
    max_advantage: float,
    max_tpr: float,
    min_per_side: int,
    seed: int,
) -> tuple[ClassExposure, ...]:
    """Figures of one attack per class (`labels` aligned with `scores`)."""
    found = []
    for label in np.unique(labels):
        rows = labels == label
        s, m = scores[rows], membership[rows] == 1
        n1, n0 = int(m.sum()), int((~m).sum())
        if n1 == 0 or n0 == 0:
            continue
        tpr, fpr = float(np.mean(s[m] >= advantage_threshold)), float(np.mean(s[~m] >= advantage_threshold))
        low, high = bootstrap_advantage_interval(s, m, advantage_threshold, seed=seed + int(label))
        caught = int(np.sum(s[m] >= tpr_threshold))
        tpr_low, tpr_high = clopper_pearson(caught, n1)
        found.append(
            ClassExposure(
                attack=attack,
                label=int(label),
                n_members=n1,
                n_nonmembers=n0,
                advantage=tpr - fpr,
                advantage_low=low,
                advantage_high=high,
                advantage_p=_advantage_p(tpr, fpr, n1, n0, max_advantage),
                tpr=caught / n1,
                tpr_low=tpr_low,
                tpr_high=tpr_high,
                fpr=float(np.mean(s[~m] >= tpr_threshold)),
                tpr_p=float(binom.sf(caught - 1, n1, max_tpr)) if max_tpr < 1 else 1.0,
                judged=min(n1, n0) >= min_per_side,
            )
        )
    return tuple(found)


def _advantage_p(tpr: float, fpr: float, n1: int, n0: int, limit: float) -> float:
    """One-sided p-value of "advantage <= limit" (unpooled z-test of a difference of proportions)."""
    gap = (tpr - fpr) - limit
    se = math.sqrt(tpr * (1 - tpr) / n1 + fpr * (1 - fpr) / n0)
    if se == 0:
        return 0.0 if gap > 0 else 1.0
    return float(norm.sf(gap / se))


def judge(
    exposures: tuple[ClassExposure, ...], *, max_advantage: float, max_tpr: float | None, strict: bool
) -> tuple[ClassExposure, ...]:
    """The exposures with `exceeds` filled in (see the module docstring); `max_tpr` None: TPR not judged."""
    tests: list[tuple[float, int, str]] = []  # (p-value, exposure position, criterion)
    failing: dict[int, list[str]] = {}
    for position, exposure in enumerate(exposures):
        if not exposure.judged:
            continue
        checks = [("advantage", exposure.advantage_high, max_advantage, exposure.advantage_p)]
        if max_tpr is not None:
            checks.append(("tpr_at_fpr", exposure.tpr_high, max_tpr, exposure.tpr_p))
        for criterion, upper, limit, p_value in checks:
            if strict:
                if not upper <= limit:  # NaN fails closed
                    failing.setdefault(position, []).append(criterion)
            else:
                tests.append((p_value if math.isfinite(p_value) else 0.0, position, criterion))
    tests.sort(key=lambda item: item[0])
    for rank, (p_value, position, criterion) in enumerate(tests):
        if p_value > ALPHA / (len(tests) - rank):
            break  # Holm: the first test not rejected stops the sequence
        failing.setdefault(position, []).append(criterion)
    return tuple(
        ClassExposure(**{**e.__dict__, "exceeds": tuple(failing.get(i, ()))}) if i in failing else e for i, e in enumerate(exposures)
    )
