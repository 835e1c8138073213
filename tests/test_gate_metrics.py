"""gates.metrics: hand-checked figures, the fail-closed NaN rule, and the bootstrap's behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gates import metrics

# A tiny set worked out by hand: members score 0.9, 0.8, 0.4; non-members 0.7, 0.3, 0.1.
HAND_SCORES = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.1])
HAND_MEMBERS = np.array([1, 1, 1, 0, 0, 0])


def gaussian_scores(n_per_side: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Members ~ N(shift, 1), non-members ~ N(0, 1): shift 0 means no leakage at all."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(shift, 1.0, n_per_side), rng.normal(0.0, 1.0, n_per_side)])
    return scores, np.repeat([1, 0], n_per_side)


def test_hand_example_rates_accuracy_advantage() -> None:
    # at 0.5: members 0.9, 0.8 caught (2/3); non-member 0.7 falsely accused (1/3)
    tpr, fpr = metrics.rates(HAND_SCORES, HAND_MEMBERS, 0.5)
    assert (tpr, fpr) == pytest.approx((2 / 3, 1 / 3))
    assert metrics.advantage(HAND_SCORES, HAND_MEMBERS, 0.5) == pytest.approx(1 / 3)
    assert metrics.attack_accuracy(HAND_SCORES, HAND_MEMBERS, 0.5) == pytest.approx(4 / 6)


def test_a_score_equal_to_the_threshold_is_predicted_member() -> None:
    assert metrics.rates(HAND_SCORES, HAND_MEMBERS, 0.4) == pytest.approx((1.0, 1 / 3))


def test_hand_example_auc_counts_pairs() -> None:
    # member/non-member pairs won by the member: 0.9 → 3, 0.8 → 3, 0.4 → 2 of 9
    assert metrics.auc(HAND_SCORES, HAND_MEMBERS) == pytest.approx(8 / 9)


def test_hand_example_roc_curve_from_origin_to_one_one() -> None:
    fpr, tpr = metrics.roc_curve(HAND_SCORES, HAND_MEMBERS)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])


def test_hand_example_best_threshold_is_a_midpoint_and_ties_pick_the_lower_median() -> None:
    # 2/3 is reached between 0.7 and 0.8 (TPR 2/3, FPR 0) and between 0.3 and 0.4 (TPR 1, FPR 1/3)
    assert metrics.best_advantage(HAND_SCORES, HAND_MEMBERS) == pytest.approx(2 / 3)
    assert metrics.best_threshold(HAND_SCORES, HAND_MEMBERS) == pytest.approx(0.35)


def test_hand_example_tpr_at_zero_fpr() -> None:
    assert metrics.tpr_at_fpr(HAND_SCORES, HAND_MEMBERS, 0.0) == pytest.approx((2 / 3, 0.0))
    assert metrics.tpr_at_fpr(HAND_SCORES, HAND_MEMBERS, 0.5) == pytest.approx((1.0, 1 / 3))


def test_perfect_separation_gives_auc_one_and_advantage_one() -> None:
    scores, members = np.array([5.0, 4.0, 3.0, 1.0, 0.0, -1.0]), np.array([1, 1, 1, 0, 0, 0])
    assert metrics.auc(scores, members) == 1.0
    assert metrics.best_advantage(scores, members) == 1.0
    threshold = metrics.best_threshold(scores, members)
    assert threshold == pytest.approx(2.0)  # midway between the lowest member and the highest non-member
    assert metrics.advantage(scores, members, threshold) == 1.0
    assert metrics.tpr_at_fpr(scores, members, 0.001) == (1.0, 0.0)


def test_best_threshold_separates_adjacent_floating_point_scores() -> None:
    low, high = 1.0, float(np.nextafter(1.0, 2.0))  # no number lies strictly between them
    scores, members = np.array([high, low]), np.array([1, 0])
    assert metrics.advantage(scores, members, metrics.best_threshold(scores, members)) == 1.0


def test_reversed_scores_give_auc_zero_and_best_advantage_zero() -> None:
    scores, members = np.array([-1.0, 0.0, 1.0, 3.0, 4.0, 5.0]), np.array([1, 1, 1, 0, 0, 0])
    assert metrics.auc(scores, members) == 0.0
    assert metrics.best_advantage(scores, members) == 0.0  # "everyone" and "no one" both reach 0
    assert metrics.advantage(scores, members, 2.0) == -1.0


def test_all_ties_give_auc_one_half() -> None:
    scores, members = np.full(10, 0.3), np.repeat([1, 0], 5)
    assert metrics.auc(scores, members) == 0.5
    assert metrics.best_advantage(scores, members) == 0.0


def test_auc_with_partial_ties_matches_the_pair_count() -> None:
    scores, members = np.array([1.0, 1.0, 0.0, 1.0, 0.0]), np.array([1, 1, 1, 0, 0])
    # 6 (member, non-member) pairs: (1, 1) twice → 2 × ½, (1, 0) twice → 2 wins, (0, 1) → loss, (0, 0) → ½
    assert metrics.auc(scores, members) == pytest.approx(3.5 / 6)


def test_swapping_members_and_non_members_flips_the_sign_of_the_advantage() -> None:
    scores, members = gaussian_scores(200, 0.7, seed=3)
    for threshold in (-0.5, 0.0, 0.35, 1.2):
        assert metrics.advantage(scores, 1 - members, threshold) == pytest.approx(-metrics.advantage(scores, members, threshold))
    assert metrics.auc(scores, 1 - members) == pytest.approx(1 - metrics.auc(scores, members))


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_achieves_best_advantage(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=300), 1)  # many ties
    members = rng.integers(0, 2, 300)
    threshold = metrics.best_threshold(scores, members)
    assert metrics.advantage(scores, members, threshold) == pytest.approx(metrics.best_advantage(scores, members))
    fpr, tpr = metrics.roc_curve(scores, members)
    assert metrics.best_advantage(scores, members) == pytest.approx(max(0.0, float(np.max(tpr - fpr))))


def test_roc_curve_is_monotone_and_its_area_is_the_auc() -> None:
    scores, members = gaussian_scores(300, 0.8, seed=1)
    fpr, tpr = metrics.roc_curve(scores, members)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.auc(scores, members))


def test_tpr_at_fpr_reports_the_fpr_actually_achieved_with_few_non_members() -> None:
    scores, members = gaussian_scores(50, 1.0, seed=2)
    # with 50 non-members the smallest non-zero FPR is 2%: a 0.1% or 1% target is met only at FPR 0
    tpr, achieved = metrics.tpr_at_fpr(scores, members, 0.001)
    assert achieved == 0.0
    assert tpr == metrics.tpr_at_fpr(scores, members, 0.01)[0]
    assert tpr == pytest.approx(np.mean(scores[:50] > scores[50:].max()))
    tpr_10, achieved_10 = metrics.tpr_at_fpr(scores, members, 0.1)
    assert 0.0 < achieved_10 <= 0.1 and tpr_10 >= tpr


def test_bootstrap_interval_contains_the_estimate_and_is_deterministic_under_seed() -> None:
    scores, members = gaussian_scores(400, 0.5, seed=4)
    estimate = metrics.advantage(scores, members, 0.25)
    low, high = metrics.bootstrap_advantage_interval(scores, members, 0.25, seed=11)
    assert low < estimate < high
    assert metrics.bootstrap_advantage_interval(scores, members, 0.25, seed=11) == (low, high)
    assert metrics.bootstrap_advantage_interval(scores, members, 0.25, seed=12) != (low, high)


def test_bootstrap_interval_narrows_with_more_samples() -> None:
    small = metrics.bootstrap_advantage_interval(*gaussian_scores(100, 0.5, seed=5), 0.25)
    large = metrics.bootstrap_advantage_interval(*gaussian_scores(10_000, 0.5, seed=5), 0.25)
    assert large[1] - large[0] < (small[1] - small[0]) / 5  # ~ sqrt(100) narrower


def test_bootstrap_matches_resampling_members_and_non_members_separately() -> None:
    """The binomial shortcut is the stratified index bootstrap: same spread as resampling rows."""
    scores, members = gaussian_scores(300, 0.6, seed=6)
    predicted = scores >= 0.3
    rng = np.random.default_rng(0)
    in_rows, out_rows = predicted[members == 1], predicted[members == 0]
    naive = [rng.choice(in_rows, in_rows.size).mean() - rng.choice(out_rows, out_rows.size).mean() for _ in range(4000)]
    naive_low, naive_high = np.quantile(naive, [0.025, 0.975])
    low, high = metrics.bootstrap_advantage_interval(scores, members, 0.3, resamples=4000)
    assert low == pytest.approx(naive_low, abs=0.015) and high == pytest.approx(naive_high, abs=0.015)


def test_no_leakage_interval_contains_zero_in_at_least_nine_of_ten_seeds() -> None:
    covered = 0
    for seed in range(10):
        scores, members = gaussian_scores(500, 0.0, seed=100 + seed)  # one distribution for both
        low, high = metrics.bootstrap_advantage_interval(scores, members, 0.0, seed=seed)
        covered += low <= 0.0 <= high
    assert covered >= 9


def test_resolution_matches_the_worst_case_half_width() -> None:
    assert metrics.resolution(450, 450) == pytest.approx(0.0653, abs=5e-4)
    assert metrics.resolution(10_000, 10_000) == pytest.approx(0.0139, abs=5e-4)
    assert metrics.resolution(450, 450, confidence=0.99) > metrics.resolution(450, 450)
    with pytest.raises(ValueError):
        metrics.resolution(0, 10)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_score_makes_every_figure_nan(bad: float) -> None:
    scores, members = gaussian_scores(100, 1.0, seed=7)
    scores[17] = bad
    result = metrics.evaluate_attack("confidence", scores, members, 0.5)
    figures = [
        result.accuracy, result.tpr, result.fpr, result.advantage, result.advantage_low, result.advantage_high,
        result.best_advantage, result.auc, result.tpr_at_1pct_fpr, result.achieved_fpr_1pct,
        result.tpr_at_01pct_fpr, result.achieved_fpr_01pct,
    ]  # fmt: skip
    assert all(math.isnan(v) for v in figures)
    assert not result.is_finite
    assert (result.n_members, result.n_nonmembers) == (100, 100)  # nothing dropped
    assert math.isnan(metrics.auc(scores, members)) and math.isnan(metrics.best_threshold(scores, members))


def test_a_nan_threshold_fails_closed() -> None:
    scores, members = gaussian_scores(50, 1.0, seed=8)
    result = metrics.evaluate_attack("samia", scores, members, float("nan"))
    assert math.isnan(result.advantage) and math.isnan(result.advantage_high) and not result.is_finite


def test_evaluate_attack_reports_every_figure_at_the_given_threshold() -> None:
    scores, members = gaussian_scores(500, 1.0, seed=9)
    result = metrics.evaluate_attack("loss", scores, members, 0.5, seed=3)
    tpr, fpr = metrics.rates(scores, members, 0.5)
    assert (result.attack, result.threshold, result.tpr, result.fpr) == ("loss", 0.5, tpr, fpr)
    assert result.advantage == pytest.approx(tpr - fpr)
    assert result.accuracy == pytest.approx((1 + result.advantage) / 2)  # balanced set
    assert (result.advantage_low, result.advantage_high) == metrics.bootstrap_advantage_interval(scores, members, 0.5, seed=3)
    assert result.best_advantage >= result.advantage
    assert result.auc == pytest.approx(metrics.auc(scores, members))
    assert result.achieved_fpr_01pct <= 0.001 and result.achieved_fpr_1pct <= 0.01
    assert result.is_finite and (result.n_members, result.n_nonmembers) == (500, 500)


@pytest.mark.parametrize(
    ("scores", "membership", "message"),
    [
        ([0.1, 0.2, 0.3], [1, 0], "same length"),
        ([0.1, 0.2, 0.3], [1, 0, 2], "only 0"),
        ([0.1, 0.2, 0.3], [1, 1, 1], "at least one member and one non-member"),
        ([0.1, 0.2], [0, 0], "at least one member and one non-member"),
    ],
)
def test_malformed_inputs_raise_value_error(scores: list[float], membership: list[int], message: str) -> None:
    for call in (
        lambda: metrics.auc(scores, membership),
        lambda: metrics.rates(scores, membership, 0.5),
        lambda: metrics.evaluate_attack("x", scores, membership, 0.5),
    ):
        with pytest.raises(ValueError, match=message):
            call()
