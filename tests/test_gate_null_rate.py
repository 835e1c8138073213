"""How often the gate's decision rule fails a model that leaks nothing (its false-fail rate).

Simulated at the metrics/decision layer, with synthetic scores instead of trained attacks, so
hundreds of null audits cost seconds. One simulated audit mirrors the gate:

- 8 attacks (the gate's default: samia, 5 threshold attacks, rmia, lira);
- each attack's advantage threshold is `metrics.best_threshold` on its own shadow scores
  (400 members, 400 non-members);
- its low-FPR threshold is `calibration.calibrated_threshold` on 1,000 calibration scores
  (known non-members) at a target FPR of 1%;
- both are applied to an evaluation set of 400 members and 400 non-members;
- the audit fails when the highest advantage exceeds 0.10 or the highest TPR at FPR 1% exceeds
  0.05 (the defaults `max_advantage` and `max_tpr_at_fpr`). Strict mode compares the upper end
  of the 95% intervals instead: `metrics.bootstrap_advantage_interval` and
  `calibration.clopper_pearson`, as `gates.gate` does.

The real gate judges the TPR criterion only where it is resolvable (10 expected false positives
on the evaluation non-members, so 1,000 per side at FPR 1%); here it is always judged, which can
only raise the false-fail rate, so the bounds below hold a fortiori for the gate's rule.

Under the null every score of every attack, member or not, comes from one distribution. Real
attacks read the same samples and so agree with each other: "correlated" scores are one shared
per-sample component plus attack-specific noise. Run with `-s` to see the measured rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest

from gates import metrics
from gates.calibration import calibrated_threshold, clopper_pearson

ATTACKS = 8
PER_SIDE = 400  # shadow members, shadow non-members, evaluation members, evaluation non-members
CALIBRATION = 1000
TARGET_FPR = 0.01
MAX_ADVANTAGE = 0.10
MAX_TPR = 0.05
NULL_DRAWS = 400
SHARED = 0.8  # share of each score's variance that all attacks have in common ("correlated")


@dataclass(frozen=True)
class Audits:
    """Per simulated audit: the highest figure over the attacks that each criterion reads."""

    advantage: np.ndarray
    tpr: np.ndarray
    advantage_high: np.ndarray
    tpr_high: np.ndarray

    def plain_fails(self) -> np.ndarray:
        return (self.advantage > MAX_ADVANTAGE) | (self.tpr > MAX_TPR)

    def strict_fails(self) -> np.ndarray:
        return (self.advantage_high > MAX_ADVANTAGE) | (self.tpr_high > MAX_TPR)


def _scores(rng: np.random.Generator, n: int, shared: float, shift: np.ndarray) -> np.ndarray:
    """(attacks, n) scores: a per-sample component common to every attack plus each attack's own noise, plus `shift`."""
    common = rng.standard_normal(n)
    own = rng.standard_normal((ATTACKS, n))
    return np.sqrt(shared) * common + np.sqrt(1.0 - shared) * own + shift[:, None]


@lru_cache(maxsize=None)
def simulate(draws: int, shared: float, member_shift: tuple[float, ...] = (0.0,) * ATTACKS, seed: int = 0) -> Audits:
    """`draws` independent audits; members' scores of attack k are shifted by `member_shift[k]` (all 0: the null)."""
    rng = np.random.default_rng(seed)
    shift, none = np.asarray(member_shift, dtype=np.float64), np.zeros(ATTACKS)
    membership = np.repeat([1, 0], PER_SIDE)
    figures = np.zeros((4, draws))
    for draw in range(draws):
        shadow = np.concatenate([_scores(rng, PER_SIDE, shared, shift), _scores(rng, PER_SIDE, shared, none)], axis=1)
        evaluation = np.concatenate([_scores(rng, PER_SIDE, shared, shift), _scores(rng, PER_SIDE, shared, none)], axis=1)
        calibration = _scores(rng, CALIBRATION, shared, none)
        advantage, tpr, advantage_high, tpr_high = [], [], [], []
        for k in range(ATTACKS):
            threshold = metrics.best_threshold(shadow[k], membership)
            tpr_k, fpr_k = metrics.rates(evaluation[k], membership, threshold)
            advantage.append(tpr_k - fpr_k)
            advantage_high.append(
                metrics.bootstrap_advantage_interval(evaluation[k], membership, threshold, seed=draw)[1]
            )
            caught = int(np.sum(evaluation[k, :PER_SIDE] >= calibrated_threshold(calibration[k], TARGET_FPR)))
            tpr.append(caught / PER_SIDE)
            tpr_high.append(clopper_pearson(caught, PER_SIDE)[1])
        figures[:, draw] = max(advantage), max(tpr), max(advantage_high), max(tpr_high)
    return Audits(*figures)


def _report(label: str, fails: np.ndarray) -> tuple[float, float]:
    """(measured false-fail rate, its 95% Clopper–Pearson upper bound), printed for `pytest -s`."""
    rate = float(fails.mean())
    high = clopper_pearson(int(fails.sum()), fails.size)[1]
    print(f"\n{label}: false-fail rate {rate:.4f} ({int(fails.sum())}/{fails.size}), 95% upper bound {high:.4f}")
    return rate, high


@pytest.mark.parametrize("shared", [SHARED, 0.0], ids=["correlated_attacks", "independent_attacks"])
def test_default_gate_rarely_fails_a_model_that_leaks_nothing(shared: float) -> None:
    """A gate that fails honest models trains users to ignore it: under the null, with 8 attacks
    and the default limits, at most 5% of audits may fail, and the measurement must show that
    with 95% confidence (its Clopper–Pearson upper bound is <= 5%), not merely on average.

    Measured (400 draws, seed 0): 0.005 (2/400) correlated, 0.015 (6/400) independent, upper
    bounds 0.018 and 0.032 (seeds 1 and 2: 0.0125 / 0.005 and 0.005 / 0.0075). Independent
    attacks are the worse case: 8 separate chances to cross 0.10, where correlated attacks
    cross together or not at all."""
    audits = simulate(NULL_DRAWS, shared)
    rate, high = _report(f"default gate, null, shared variance {shared}", audits.plain_fails())
    assert high <= 0.05, f"false-fail rate {rate:.4f}, 95% upper bound {high:.4f}"
    # neither criterion is anywhere near its limit on average: the failures are tail events
    assert np.median(audits.advantage) < MAX_ADVANTAGE / 2
    assert np.median(audits.tpr) < MAX_TPR / 2


def test_low_fpr_criterion_alone_almost_never_fails_a_model_that_leaks_nothing() -> None:
    """With 1,000 calibration samples the 1%-FPR threshold lets through about 4 of 400 null
    members; crossing 5% needs 21, so the TPR criterion contributes essentially no false fails
    and the false-fail rate is the advantage criterion's."""
    audits = simulate(NULL_DRAWS, 0.0)
    _report("TPR at FPR 1% alone, null, independent attacks", audits.tpr > MAX_TPR)
    assert np.all(audits.tpr <= MAX_TPR)


STRICT_NULL_RANGE = {SHARED: (0.25, 0.55), 0.0: (0.40, 0.70)}
"""Where strict mode's null false-fail rate was measured to lie: 0.375 / 0.395 / 0.413 (correlated)
and 0.523 / 0.578 / 0.538 (independent) for seeds 0 / 1 / 2, with margin on both sides."""


@pytest.mark.parametrize("shared", [SHARED, 0.0], ids=["correlated_attacks", "independent_attacks"])
def test_strict_gate_fails_null_models_far_more_often(shared: float) -> None:
    """Strict mode fails when the *upper* end of a 95% interval exceeds a limit, so it fails
    null models far more often than the default: at 400 evaluation samples per side the
    advantage interval's half-width (~0.07) alone takes a zero advantage most of the way to 0.10,
    and 8 attacks get 8 tries. That is its known price (for CI, where a false alarm is cheaper
    than a missed leak); this pins it so that a change to it is noticed.

    Measured (400 draws, seed 0): 0.375 correlated, 0.5225 independent; the advantage interval
    causes nearly all of it (0.353 / 0.493 alone), the TPR's upper bound 0.050 / 0.063 alone."""
    audits = simulate(NULL_DRAWS, shared)
    plain, _ = _report(f"default gate, null, shared variance {shared}", audits.plain_fails())
    strict, _ = _report(f"strict gate, null, shared variance {shared}", audits.strict_fails())
    _report(f"strict advantage alone, null, shared variance {shared}", audits.advantage_high > MAX_ADVANTAGE)
    _report(f"strict TPR alone, null, shared variance {shared}", audits.tpr_high > MAX_TPR)
    assert np.all(audits.strict_fails() >= audits.plain_fails()), "strict mode must fail every audit the default fails"
    low, high = STRICT_NULL_RANGE[shared]
    assert strict > 10 * plain
    assert low <= strict <= high, f"strict null false-fail rate {strict:.4f} left its measured range [{low}, {high}]"


@pytest.mark.parametrize("shared", [SHARED, 0.0], ids=["correlated_attacks", "independent_attacks"])
def test_gate_fails_a_model_that_leaks(shared: float) -> None:
    """The null rates above mean something only if the same rule catches a real leak: members'
    scores shifted by 0.5 standard deviations (AUC ~0.64, advantage ~0.2) fail every audit."""
    audits = simulate(50, shared, (0.5,) * ATTACKS, seed=1)
    rate = float(audits.plain_fails().mean())
    print(f"\ndefault gate, members shifted by 0.5, shared variance {shared}: fail rate {rate:.4f}")
    assert rate == 1.0


def test_gate_fails_when_only_one_of_eight_attacks_leaks() -> None:
    """The decision reads the strongest attack: one leaking attack among seven null ones fails
    the audit, the maximum is not diluted by the others."""
    shift = (0.0,) * (ATTACKS - 1) + (0.5,)
    audits = simulate(50, 0.0, shift, seed=2)
    assert audits.plain_fails().mean() == 1.0
