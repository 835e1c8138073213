"""Offline RMIA and LiRA, the calibration threshold and the ε estimate: what each promises.

Signals are built by hand (no model trained), so the module runs in about a second. The
end-to-end checks (the gate with these attacks on real runs) are in test_gate.py and
test_gate_leakage.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gates import metrics
from gates.attacks import make_attack
from gates.calibration import calibrated_rate, calibrated_threshold, clopper_pearson, epsilon_lower_bound
from gates.exposure import class_exposure, judge
from gates.references import PseudoTarget, ReferenceSignals, SignalTable, true_class_signals

REFERENCES = 4


def signals(n: int, *, shift: float, seed: int, out_fraction: float = 1.0, first_index: int = 0) -> ReferenceSignals:
    """Samples whose target-model logit exceeds the references' by `shift` (members) or not (shift 0).

    Each sample has its own difficulty (shared by every model), so a sample's raw confidence says
    little: only the comparison with the references does, which is what these attacks exploit.
    """
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 2.0, size=n)
    reference_logit = difficulty[:, None] + rng.normal(0.0, 0.5, size=(n, REFERENCES))
    target_logit = difficulty + shift + rng.normal(0.0, 0.5, size=n)
    hidden = rng.random((n, REFERENCES)) > out_fraction
    reference_logit[hidden] = np.nan
    to_p = lambda logit: 1.0 / (1.0 + np.exp(-logit))  # noqa: E731
    return ReferenceSignals(
        to_p(target_logit), target_logit, to_p(reference_logit), reference_logit, np.zeros(n, dtype=np.int64), np.arange(first_index, first_index + n)
    )


def concat(a: ReferenceSignals, b: ReferenceSignals) -> ReferenceSignals:
    return ReferenceSignals(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in ReferenceSignals.__dataclass_fields__))


def fitted(name: str, population: ReferenceSignals, shift: float = 1.5):
    """An attack tuned on pseudo-targets (shadows playing the victim) with OUT references for ~half their samples."""
    targets = []
    for k in range(3):
        members = signals(300, shift=shift, seed=100 + k, out_fraction=0.5, first_index=10_000 * (k + 1))
        nonmembers = signals(300, shift=0.0, seed=200 + k, out_fraction=0.5, first_index=10_000 * (k + 1) + 5000)
        targets.append(PseudoTarget(concat(members, nonmembers), np.r_[np.ones(300), np.zeros(300)].astype(np.int64), population))
    attack = make_attack(name)
    attack.fit(targets, population)
    return attack


@pytest.fixture(scope="module")
def population() -> ReferenceSignals:
    return signals(1000, shift=0.0, seed=7, first_index=100_000)


@pytest.mark.parametrize("name", ["rmia", "lira"])
def test_a_reference_attack_sees_members_the_references_did_not_predict(name, population):
    attack = fitted(name, population)
    evaluation = concat(signals(500, shift=1.5, seed=1), signals(500, shift=0.0, seed=2, first_index=500))
    membership = np.r_[np.ones(500), np.zeros(500)].astype(np.int64)
    scores = attack.score(evaluation, population)
    assert metrics.auc(scores, membership) > 0.85
    # the raw confidence alone is far weaker: the per-sample difficulty hides the signal
    assert metrics.auc(evaluation.confidence, membership) < 0.75


@pytest.mark.parametrize("name", ["rmia", "lira"])
def test_on_no_signal_a_reference_attacks_interval_holds_zero(name, population):
    attack = fitted(name, population, shift=0.0)
    evaluation = concat(signals(500, shift=0.0, seed=3), signals(500, shift=0.0, seed=4, first_index=500))
    membership = np.r_[np.ones(500), np.zeros(500)].astype(np.int64)
    threshold_split = concat(signals(200, shift=0.0, seed=5, first_index=2000), signals(200, shift=0.0, seed=6, first_index=3000))
    threshold = metrics.best_threshold(attack.score(threshold_split, population), np.r_[np.ones(200), np.zeros(200)])
    measured = metrics.evaluate_attack(name, attack.score(evaluation, population), membership, threshold, seed=0)
    assert measured.advantage_low <= 0.0 <= measured.advantage_high
    assert abs(measured.auc - 0.5) < 0.05


def test_rmia_tunes_a_on_shadow_data_and_a_recipe_value_overrides_it(population):
    tuned = fitted("rmia", population)
    assert 0.0 <= tuned.a <= 1.0 and tuned.a_source.startswith("shadow data")
    assert len(tuned.a_auc) == 21
    fixed = make_attack("rmia", {"rmia_offline_a": 0.3})
    fixed.fit([], population)
    assert fixed.a == 0.3 and fixed.a_source == "recipe"
    alone = make_attack("rmia")
    alone.fit([], population)  # one shadow: no pseudo-victim has a reference
    assert alone.a == 0.5 and alone.a_source.startswith("fallback")


def test_rmia_scores_are_population_fractions_counted_without_itself(population):
    attack = make_attack("rmia", {"rmia_offline_a": 0.5})
    attack.fit([], population)
    own = attack.score(population, population)
    assert own.min() >= 0.0 and own.max() <= 1.0
    # a population sample is compared with the other m − 1: ranks 0 … m−1 over m − 1, each once
    assert sorted(np.round(own * (len(population) - 1)).astype(int)) == list(range(len(population)))


def test_rmia_scores_without_an_n_by_m_matrix(population):
    """Sorting and searchsorted: memory grows with n + m; 20k × 1k doubles would be 160 MB."""
    import tracemalloc

    attack = make_attack("rmia", {"rmia_offline_a": 0.5})
    attack.fit([], population)
    big = signals(20_000, shift=0.0, seed=9, first_index=200_000)
    tracemalloc.start()
    try:
        scores = attack.score(big, population)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scores.shape == (20_000,)
    assert peak < 20 * 2**20


@pytest.mark.parametrize("name", ["rmia", "lira"])
def test_a_reference_or_target_signal_that_is_nan_fails_closed(name, population):
    attack = fitted(name, population)
    evaluation = signals(10, shift=0.0, seed=11)
    broken = ReferenceSignals(
        np.where(np.arange(10) == 3, np.nan, evaluation.confidence),
        np.where(np.arange(10) == 3, np.nan, evaluation.logit),
        evaluation.reference_confidence,
        evaluation.reference_logit,
        evaluation.labels,
        evaluation.indices,
    )
    assert np.isnan(attack.score(broken, population)[3])


def test_the_signal_table_marks_a_shadows_own_training_samples_as_not_out():
    confidence = np.array([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]])
    trained = np.array([[True, False, False], [False, True, False]])
    table = SignalTable(np.array([5, 9]), np.array([0, 1]), confidence, np.log(confidence / (1 - confidence)), trained)
    victim = table.view(np.array([5, 9]), table.victim)
    assert np.array_equal(np.isnan(victim.reference_confidence), trained[:, :2])
    assert np.array_equal(victim.confidence, [0.7, 0.4])
    shadow = table.view(np.array([5, 9]), 0)  # shadow 0 as the target: only shadow 1 is a reference
    assert shadow.reference_confidence.shape == (2, 1)
    assert np.isnan(shadow.reference_confidence[1, 0]) and shadow.reference_confidence[0, 0] == 0.8
    with pytest.raises(ValueError, match="no row"):
        table.view(np.array([6]), 0)


def test_the_logit_keeps_its_digits_for_confident_rows():
    posteriors = np.array([[1.0 - 1e-20, 1e-20, 0.0]])
    p_y, logit = true_class_signals(posteriors, np.array([0]))
    assert logit[0] == pytest.approx(math.log(1e20), rel=1e-9)  # 1 − p_y would have rounded to 0


# --------------------------------------------------------------------------------- calibration


def test_the_calibration_threshold_accuses_at_most_the_target_share_of_known_non_members():
    rng = np.random.default_rng(0)
    for size in (100, 999, 1000, 4321):
        scores = np.round(rng.normal(size=size), 1)  # many ties
        for fpr in (0.001, 0.01, 0.05):
            threshold = calibrated_threshold(scores, fpr)
            assert np.mean(scores >= threshold) <= fpr
    assert math.isnan(calibrated_threshold(np.array([0.1, np.nan]), 0.01))


def test_the_calibrated_rate_reports_exact_intervals_and_counts():
    scores = np.r_[np.linspace(0, 1, 100), np.linspace(0, 1, 100) - 0.5]
    membership = np.r_[np.ones(100), np.zeros(100)].astype(np.int64)
    rate = calibrated_rate(scores, membership, np.linspace(-0.5, 0.5, 1000), 0.01, resolvable=True)
    assert rate.true_positives == int(np.sum(scores[:100] >= rate.threshold))
    assert rate.tpr_low <= rate.tpr <= rate.tpr_high and rate.fpr_low <= rate.fpr <= rate.fpr_high
    assert rate.calibration_fpr <= 0.01


def test_clopper_pearson_matches_known_values():
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.3084971, rel=1e-6)
    low, high = clopper_pearson(5, 10)
    assert (low, high) == (pytest.approx(0.1870860, rel=1e-6), pytest.approx(0.8129140, rel=1e-6))


def test_the_epsilon_estimate_is_zero_without_evidence_and_grows_with_it():
    def rate(tp: int, fp: int, n: int = 1000):
        return calibrated_rate(
            np.r_[np.ones(tp), np.zeros(n - tp), np.ones(fp), np.zeros(n - fp)],
            np.r_[np.ones(n), np.zeros(n)],
            np.zeros(100),
            0.01,
            resolvable=True,
        )

    assert epsilon_lower_bound(rate(10, 10), alpha=0.05, delta=1e-5) == 0.0
    weak, strong = epsilon_lower_bound(rate(100, 10), alpha=0.05, delta=1e-5), epsilon_lower_bound(rate(400, 10), alpha=0.05, delta=1e-5)
    assert 0.0 < weak < strong < math.log(400 / 10)  # a lower bound, below the point ratio
    assert epsilon_lower_bound(rate(100, 10), alpha=0.05 / 16, delta=1e-5) < weak  # Bonferroni widens the bounds


# ------------------------------------------------------------------------------------ per class


def test_per_class_exposure_names_the_class_that_leaks_and_noise_fails_none():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 4000)
    membership = np.tile(np.r_[np.ones(2000), np.zeros(2000)], 5).astype(np.int64)
    scores = rng.normal(size=labels.size) + 1.5 * ((labels == 2) & (membership == 1))
    exposures = class_exposure(
        "rmia", scores, membership, labels, advantage_threshold=0.5, tpr_threshold=2.3,
        max_advantage=0.1, max_tpr=0.05, min_per_side=50, seed=0,
    )
    for strict in (False, True):
        judged = judge(exposures, max_advantage=0.1, max_tpr=0.05, strict=strict)
        assert [e.label for e in judged if e.exceeds] == [2]
    small = judge(
        class_exposure("rmia", scores, membership, labels, advantage_threshold=0.5, tpr_threshold=2.3,
                       max_advantage=0.1, max_tpr=0.05, min_per_side=5000, seed=0),
        max_advantage=0.1, max_tpr=0.05, strict=False,
    )
    assert not any(e.judged or e.exceeds for e in small)  # too few samples: reported, never judged
