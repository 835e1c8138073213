"""gates.attacks: the registry, the threshold family's signals and thresholds, and SAMIA's training contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gates import metrics
from gates.attacks import (
    ATTACKS,
    DEFAULT_ATTACKS,
    FEATURE_ATTACKS,
    REFERENCE_ATTACKS,
    THRESHOLD_ATTACKS,
    attack_names,
    make_attack,
    uses_references,
)
from gates.attacks.base import Attack, AttackContext
from gates.attacks.samia import SamiaAttack, SamiaSettings
from gates.attacks.threshold import SIGNALS, ThresholdAttack
from gates.errors import GateInputError
from gates.features import AttackFeatures

# SAMIA settings that keep each fit around a second on 2 CPU cores
FAST_SAMIA = {"samia_max_epochs": 6, "samia_patience": 3}


def synthetic(
    n_members: int,
    n_nonmembers: int,
    *,
    classes: int = 5,
    seed: int = 0,
    member_peak: float = 3.0,
    nonmember_peak: float = 1.5,
) -> tuple[AttackFeatures, np.ndarray]:
    """Features of an overfitted model: members get a larger true-class logit and flatter surroundings.

    Members' posteriors are more peaked on the label and less sensitive to input noise than
    non-members'. Dataset indices are unique per seed, so shadow and evaluation sets never share one.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for n, peak, roughness in ((n_members, member_peak, 0.5), (n_nonmembers, nonmember_peak, 1.5)):
        labels = rng.integers(0, classes, n)
        logits = rng.normal(0.0, 1.0, (n, classes))
        logits[np.arange(n), labels] += rng.normal(peak, 1.0, n)
        posteriors = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        sensitivity = rng.gamma(2.0, roughness, (n, classes)) * posteriors * (1 - posteriors)
        parts.append((posteriors, sensitivity, labels))
    posteriors, sensitivity, labels = (np.concatenate(column) for column in zip(*parts))
    indices = seed * 1_000_000 + np.arange(labels.size)
    return AttackFeatures(posteriors, sensitivity, labels, indices), np.repeat([1, 0], [n_members, n_nonmembers])


def one_sample(posterior: list[float], label: int) -> AttackFeatures:
    p = np.array([posterior])
    return AttackFeatures(p, np.zeros_like(p), [label], [0])


# --- registry -----------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert THRESHOLD_ATTACKS == ("confidence", "loss", "entropy", "modified_entropy", "top1")
    assert FEATURE_ATTACKS == ("samia", *THRESHOLD_ATTACKS)
    assert REFERENCE_ATTACKS == ("rmia", "lira")
    assert DEFAULT_ATTACKS == (*FEATURE_ATTACKS, *REFERENCE_ATTACKS)
    assert set(attack_names()) == set(DEFAULT_ATTACKS) == set(ATTACKS)
    assert [uses_references(name) for name in DEFAULT_ATTACKS] == [False] * 6 + [True] * 2


@pytest.mark.parametrize("name", FEATURE_ATTACKS)
def test_make_attack_builds_a_fresh_attack_of_that_name(name: str) -> None:
    attack = make_attack(name)
    assert isinstance(attack, Attack)
    assert attack.name == name
    assert make_attack(name) is not attack


def test_an_unknown_attack_name_lists_the_known_ones() -> None:
    with pytest.raises(GateInputError, match="unknown attack 'lirra'.*samia, confidence, loss, entropy, modified_entropy, top1, rmia, lira"):
        make_attack("lirra")


def test_invalid_config_is_a_gate_input_error_naming_the_setting() -> None:
    with pytest.raises(GateInputError, match=r"gate.samia_validation_fraction = 1.0 is invalid; allowed: a number in \[0, 1\)"):
        make_attack("samia", {"samia_validation_fraction": 1.0})
    with pytest.raises(GateInputError, match="gate.samia_batch_size = 1 is invalid"):
        make_attack("samia", {"samia_batch_size": 1})


# --- threshold attacks: signals -----------------------------------------------------------------


def test_signals_on_a_hand_built_posterior() -> None:
    p, y = np.array([[0.7, 0.2, 0.1]]), np.array([0])
    log = math.log
    assert SIGNALS["confidence"](p, y)[0] == pytest.approx(0.7)
    assert SIGNALS["loss"](p, y)[0] == pytest.approx(log(0.7))
    assert SIGNALS["entropy"](p, y)[0] == pytest.approx(0.7 * log(0.7) + 0.2 * log(0.2) + 0.1 * log(0.1))
    # Mentr = −(1 − p_y)·log p_y − Σ_{i≠y} p_i·log(1 − p_i); the score is −Mentr
    assert SIGNALS["modified_entropy"](p, y)[0] == pytest.approx(0.3 * log(0.7) + 0.2 * log(0.8) + 0.1 * log(0.9))
    assert SIGNALS["top1"](p, y)[0] == pytest.approx(0.7)


def test_signals_that_read_the_label_change_with_it() -> None:
    p, y = np.array([[0.7, 0.2, 0.1]]), np.array([1])
    log = math.log
    assert SIGNALS["confidence"](p, y)[0] == pytest.approx(0.2)
    assert SIGNALS["loss"](p, y)[0] == pytest.approx(log(0.2))
    assert SIGNALS["modified_entropy"](p, y)[0] == pytest.approx(0.8 * log(0.2) + 0.7 * log(0.3) + 0.1 * log(0.9))
    assert SIGNALS["entropy"](p, y)[0] == SIGNALS["entropy"](p, np.array([0]))[0]
    assert SIGNALS["top1"](p, y)[0] == pytest.approx(0.7)


def test_modified_entropy_ranks_a_confident_wrong_prediction_below_an_uncertain_one() -> None:
    """Entropy cannot tell "confidently right" from "confidently wrong"; modified entropy can."""
    p = np.array([[0.98, 0.01, 0.01], [0.98, 0.01, 0.01], [0.4, 0.3, 0.3]])
    y = np.array([0, 1, 0])
    entropy, modified = SIGNALS["entropy"](p, y), SIGNALS["modified_entropy"](p, y)
    assert entropy[0] == entropy[1]
    assert modified[0] > modified[2] > modified[1]


def test_signals_stay_finite_at_posteriors_of_exactly_zero_and_one() -> None:
    p, y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.array([0, 0])
    for name, signal in SIGNALS.items():
        assert np.all(np.isfinite(signal(p, y))), name
    assert SIGNALS["loss"](p, y)[1] == pytest.approx(math.log(1e-30))


# --- threshold attacks: thresholds from shadow data ------------------------------------------------


def per_class_shadow(n_per_class_side: int) -> tuple[AttackFeatures, np.ndarray]:
    """Two classes on different confidence scales: class 0 members ~0.95 vs non-members ~0.85,
    class 1 members ~0.55 vs non-members ~0.45. One global threshold cannot separate both."""
    rng = np.random.default_rng(0)
    rows, labels, membership = [], [], []
    for label, (member_conf, nonmember_conf) in enumerate(((0.95, 0.85), (0.55, 0.45))):
        for member, conf in ((1, member_conf), (0, nonmember_conf)):
            c = np.clip(conf + rng.uniform(-0.04, 0.04, n_per_class_side), 0.0, 1.0)
            p = np.zeros((n_per_class_side, 2))
            p[:, label], p[:, 1 - label] = c, 1 - c
            rows.append(p)
            labels.append(np.full(n_per_class_side, label))
            membership.append(np.full(n_per_class_side, member))
    posteriors = np.concatenate(rows)
    n = posteriors.shape[0]
    return AttackFeatures(posteriors, np.zeros_like(posteriors), np.concatenate(labels), np.arange(n)), np.concatenate(membership)


def test_per_class_thresholds_when_every_class_has_enough_shadow_samples() -> None:
    features, membership = per_class_shadow(20)  # exactly min_per_class on each side of each class
    attack = make_attack("confidence", {"threshold_min_per_class": 20})
    attack.fit(features, membership)
    assert isinstance(attack, ThresholdAttack) and attack.per_class
    assert attack.threshold == 0.0
    np.testing.assert_allclose(attack.class_thresholds, [0.9, 0.5], atol=0.04)
    scores = attack.score(features)
    np.testing.assert_allclose(scores, attack.raw_score(features) - attack.class_thresholds[features.labels])
    assert metrics.advantage(scores, membership, attack.threshold) == 1.0  # both scales separated


def test_one_global_threshold_when_a_class_has_too_few_shadow_samples() -> None:
    features, membership = per_class_shadow(19)
    attack = make_attack("confidence", {"threshold_min_per_class": 20})
    attack.fit(features, membership)
    assert not attack.per_class
    assert np.unique(attack.class_thresholds).size == 1
    assert metrics.advantage(attack.score(features), membership, attack.threshold) < 1.0


def test_a_class_missing_from_the_shadow_data_forces_a_global_threshold() -> None:
    features, membership = synthetic(200, 200, classes=3, seed=1)
    keep = features.labels != 2
    attack = make_attack("loss", {"threshold_min_per_class": 5})
    attack.fit(features.subset(keep), membership[keep])
    assert not attack.per_class
    assert np.all(np.isfinite(attack.score(features)))  # class 2 is still scored, against the global threshold


@pytest.mark.parametrize("name", FEATURE_ATTACKS)
def test_every_attack_detects_members_with_clearly_higher_confidence(name: str) -> None:
    shadow, shadow_membership = synthetic(300, 300, seed=1, member_peak=4.0, nonmember_peak=1.0)
    evaluation, membership = synthetic(300, 300, seed=2, member_peak=4.0, nonmember_peak=1.0)
    attack = make_attack(name, FAST_SAMIA)
    attack.fit(shadow, shadow_membership)
    scores = attack.score(evaluation)
    assert scores.shape == (600,) and scores.dtype == np.float64
    assert metrics.auc(scores, membership) > 0.8
    assert metrics.advantage(scores, membership, attack.threshold) > 0.3  # the shadow threshold transfers


@pytest.mark.parametrize("name", FEATURE_ATTACKS)
def test_score_before_fit_is_an_error(name: str) -> None:
    features, _ = synthetic(5, 5)
    with pytest.raises(RuntimeError, match="fit"):
        make_attack(name).score(features)


@pytest.mark.parametrize("name", FEATURE_ATTACKS)
def test_shadow_data_without_non_members_is_a_gate_input_error(name: str) -> None:
    features, _ = synthetic(10, 10)
    with pytest.raises(GateInputError, match="members and non-members"):
        make_attack(name).fit(features, np.ones(20, dtype=np.int64))


@pytest.mark.parametrize(("name", "min_per_class"), [("confidence", 1), ("confidence", 1000), ("samia", 20)])
def test_nan_posteriors_in_shadow_data_fail_closed(name: str, min_per_class: int) -> None:
    """One broken shadow measurement makes every score NaN, and so every figure: never a pass.

    (Per-class thresholds too: not only the class of the broken sample. SAMIA would otherwise
    keep its untrained weights with a finite threshold.)"""
    features, membership = synthetic(50, 50)
    posteriors = features.posteriors.copy()
    posteriors[3] = np.nan
    broken = AttackFeatures(posteriors, features.sensitivity, features.labels, features.indices)
    attack = make_attack(name, {"threshold_min_per_class": min_per_class, "samia_max_epochs": 3, "samia_patience": 2})
    attack.fit(broken, membership)
    if name == "confidence":
        assert attack.per_class == (min_per_class == 1)
    scores = attack.score(features)
    assert np.all(np.isnan(scores))
    result = metrics.evaluate_attack(name, scores, membership, attack.threshold)
    assert math.isnan(result.advantage) and not result.is_finite


# --- SAMIA ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_samia() -> tuple[SamiaAttack, AttackFeatures, np.ndarray, list[tuple[int, int]]]:
    shadow, membership = synthetic(300, 300, seed=1)
    epochs: list[tuple[int, int]] = []
    attack = SamiaAttack(SamiaSettings(**FAST_SAMIA))
    attack.fit(shadow, membership, on_epoch=lambda done, total: epochs.append((done, total)))
    return attack, shadow, membership, epochs


def test_samia_separates_fresh_samples(fitted_samia) -> None:
    attack = fitted_samia[0]
    evaluation, membership = synthetic(300, 300, seed=2)
    scores = attack.score(evaluation)
    assert np.all((scores >= 0) & (scores <= 1))  # the member probability
    assert metrics.auc(scores, membership) > 0.8
    assert metrics.advantage(scores, membership, attack.threshold) > 0.4


def test_samia_threshold_is_the_best_threshold_on_its_validation_split(fitted_samia) -> None:
    attack, shadow, membership, _ = fitted_samia
    val = attack.validation_positions
    assert val.size == round(0.2 * 300) * 2  # stratified: 20% of each side
    assert membership[val].sum() == val.size // 2
    expected = metrics.best_threshold(attack.score(shadow.subset(val)), membership[val])
    assert attack.threshold == expected
    assert attack.best_epoch <= attack.epochs_run and attack.validation_auc == max(attack.validation_history)


def test_samia_reports_each_epoch(fitted_samia) -> None:
    attack, _, _, epochs = fitted_samia
    assert epochs == [(epoch, FAST_SAMIA["samia_max_epochs"]) for epoch in range(1, attack.epochs_run + 1)]


def test_samia_threshold_corrects_for_a_member_heavy_shadow_set() -> None:
    """Trained on 5 members per non-member, the network says "member" too easily: 0.5 is the wrong cut."""
    shadow, shadow_membership = synthetic(600, 120, seed=10)
    evaluation, membership = synthetic(500, 500, seed=20)
    attack = SamiaAttack(SamiaSettings(samia_max_epochs=5, samia_patience=3), AttackContext(seed=0))
    attack.fit(shadow, shadow_membership)
    scores = attack.score(evaluation)
    assert attack.threshold > 0.7
    assert np.mean(scores >= 0.5) > np.mean(scores >= attack.threshold)
    assert metrics.advantage(scores, membership, attack.threshold) > metrics.advantage(scores, membership, 0.5) + 0.03


def test_samia_is_deterministic_under_seed_and_leaves_the_global_rng_alone() -> None:
    shadow, membership = synthetic(120, 120, seed=3)
    evaluation, _ = synthetic(50, 50, seed=4)
    config = (SamiaSettings(samia_max_epochs=3, samia_patience=3), AttackContext(seed=7))

    torch.manual_seed(123)
    first = SamiaAttack(*config)
    first.fit(shadow, membership)
    after_fit = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after_fit)  # fit drew nothing from the caller's generator

    second = SamiaAttack(*config)
    second.fit(shadow, membership)
    np.testing.assert_array_equal(first.score(evaluation), second.score(evaluation))
    assert first.threshold == second.threshold

    other = SamiaAttack(SamiaSettings(samia_max_epochs=3, samia_patience=3), AttackContext(seed=8))
    other.fit(shadow, membership)
    assert not np.array_equal(first.score(evaluation), other.score(evaluation))


def test_samia_stops_early_when_validation_auc_stalls() -> None:
    shadow, membership = synthetic(100, 100, seed=5)
    membership = np.random.default_rng(0).permutation(membership)  # labels unrelated to the features: nothing to learn
    attack = SamiaAttack(SamiaSettings(samia_max_epochs=40, samia_patience=2), AttackContext(seed=0))
    attack.fit(shadow, membership)
    assert attack.epochs_run < 40
    assert attack.epochs_run - attack.best_epoch == 2


def test_samia_needs_two_samples_per_side() -> None:
    features, _ = synthetic(3, 1)
    with pytest.raises(GateInputError, match="at least 2 shadow non-members"):
        SamiaAttack(SamiaSettings()).fit(features, np.array([1, 1, 1, 0]))


def test_samia_refuses_features_with_another_number_of_classes(fitted_samia) -> None:
    other, _ = synthetic(5, 5, classes=3)
    with pytest.raises(GateInputError, match="5 classes"):
        fitted_samia[0].score(other)


def test_samia_trains_on_a_proportional_subsample_beyond_its_row_cap() -> None:
    shadow, membership = synthetic(400, 200, seed=6)
    attack = SamiaAttack(SamiaSettings(samia_max_epochs=2, samia_patience=2, samia_max_samples=150), AttackContext(seed=0))
    attack.fit(shadow, membership)
    assert 140 <= attack.trained_rows <= 150
    kept_members = membership[attack.validation_positions].mean()
    assert kept_members == pytest.approx(2 / 3, abs=0.05)  # the 2:1 member ratio survives the cap
