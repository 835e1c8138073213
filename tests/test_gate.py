"""The gate's policy end to end on the tiny run: what it measures, and that it fails closed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

import gates.gate as gate_module
import gates.work as work_module
from conftest import NaNOutputs
from gates.gate import GatePolicy, run_gate, select_evaluation
from prunectl.api import load_run
from prunectl.stages.gate import gate_inputs, gate_policy
from prunectl.recipe import GateSpec

FAST = GateSpec(shadows=2, bootstrap=200)


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_run(tiny_run[1])


@pytest.fixture(scope="module")
def default_result(loaded):
    """The gate with the recipe's default settings: 4 shadows, SAMIA and the threshold family."""
    return run_gate(gate_inputs(loaded), gate_policy(loaded.recipe))


def _policy(loaded, **changes) -> GatePolicy:
    return dataclasses.replace(gate_policy(loaded.recipe, FAST), **changes)


def test_the_default_gate_audits_both_models_with_every_attack_on_a_balanced_set(default_result, loaded):
    result = default_result
    assert result.verdict in ("pass", "fail")
    assert result.gated_attacks == ("samia", "confidence", "loss", "entropy", "modified_entropy", "top1", "rmia", "lira")
    for audit in (result.original, result.pruned):
        assert [m.attack for m in audit.attacks] == list(result.gated_attacks)
        assert all(m.is_finite for m in audit.attacks)
        assert all(m.n_members == m.n_nonmembers == result.n_members for m in audit.attacks)
    assert result.n_members == result.n_nonmembers >= 100
    assert result.pruned.metrics("samia").threshold_source == "shadow validation split"
    assert "shadow data" in result.pruned.metrics("confidence").threshold_source
    assert result.pruned.metrics("rmia").threshold_source.startswith("auditor split")
    assert result.threshold_pairs > 0 and result.calibration_size >= 100
    assert len(result.shadows) == 4
    assert len({s.seed for s in result.shadows}) == 4
    assert result.pruned.holdout_accuracy == pytest.approx(_holdout_accuracy(loaded.pruned_model, loaded), abs=1e-6)


def test_the_maximum_over_the_gated_attacks_decides(default_result):
    result = default_result
    highest = max(result.pruned.attacks, key=lambda m: m.advantage)
    assert result.deciding_attack == highest.attack
    assert result.gated_value == pytest.approx(highest.advantage)
    assert result.criterion("advantage").status == ("pass" if highest.advantage <= result.max_advantage else "fail")


def test_a_false_positive_rate_the_data_cannot_resolve_is_reported_not_gated(default_result):
    """200 holdout samples and a 700-sample pool: 1% FPR means 1.6 and 1.75 expected false positives."""
    criterion = default_result.criterion("tpr_at_fpr")
    assert criterion.status == "not resolvable" and "expected false positives" in criterion.reason
    assert any("not resolvable" in w for w in default_result.warnings)
    rate = default_result.pruned.metrics("rmia").rate(0.01)
    assert rate is not None and not rate.resolvable and rate.calibration_fpr <= 0.01
    assert default_result.passed == (default_result.criterion("advantage").status == "pass")


def test_asking_for_a_false_positive_rate_the_data_cannot_resolve_is_refused_before_any_training(loaded):
    from gates.errors import GateInputError

    calls = []
    inputs = dataclasses.replace(gate_inputs(loaded), train_shadow=lambda *a: calls.append(a))
    with pytest.raises(GateInputError, match=r"max_tpr_at_fpr asks for the TPR at FPR 0.01, which this data cannot resolve"):
        run_gate(inputs, _policy(loaded, max_tpr_at_fpr=0.05))
    assert calls == []


@pytest.mark.parametrize(("pool", "calibration"), [(200, 100), (399, 100), (700, 175), (899, 224), (40_000, 2000)])
def test_the_default_calibration_slice_is_a_quarter_of_the_pool_between_100_and_2000(loaded, pool, calibration):
    assert _policy(loaded).calibration_count(pool) == calibration


def test_the_highest_tpr_at_the_calibration_threshold_decides_the_low_fpr_criterion(loaded):
    """At FPR 0.1 the tiny run resolves the rate (13 expected false positives on calibration)."""
    result = run_gate(gate_inputs(loaded), _policy(loaded, attacks=("confidence", "rmia", "lira"), target_fpr=0.1, max_tpr_at_fpr=0.0))
    criterion = result.criterion("tpr_at_fpr")
    assert criterion.status == "fail" and result.verdict == "fail"
    rates = {m.attack: m.rate(0.1) for m in result.pruned.attacks}
    assert criterion.deciding_attack == max(rates, key=lambda name: rates[name].tpr)
    assert criterion.value == pytest.approx(rates[criterion.deciding_attack].tpr)
    for rate in rates.values():
        assert rate.resolvable and rate.calibration_fpr <= 0.1
        assert rate.tpr_low <= rate.tpr <= rate.tpr_high


def test_per_class_exposure_is_reported_and_gated_when_asked(loaded):
    result = run_gate(gate_inputs(loaded), _policy(loaded, attacks=("confidence", "rmia"), per_class=True, per_class_min=10))
    criterion = result.criterion("per_class")
    assert criterion.status in ("pass", "fail")
    assert {e.attack for e in result.per_class} <= {"confidence", "rmia"} and "rmia" in {e.attack for e in result.per_class}
    assert {e.label for e in result.per_class} == set(range(10))
    assert all(e.judged for e in result.per_class)
    assert (criterion.status == "fail") == any(e.exceeds for e in result.per_class)


def test_the_reported_resolution_matches_the_evaluation_size(default_result):
    n = default_result.n_members
    assert default_result.resolution == pytest.approx(1.96 * math.sqrt(0.5 / n), rel=1e-3)


def test_strict_mode_with_zero_tolerance_fails(loaded):
    result = run_gate(gate_inputs(loaded), _policy(loaded, attacks=("confidence", "loss"), strict=True, max_advantage=0.0))
    assert result.verdict == "fail" and not result.passed
    assert result.gated_value == pytest.approx(result.pruned.metrics(result.deciding_attack).advantage_high)
    assert any("finer than this evaluation set can resolve" in w for w in result.warnings)


def test_the_victims_evaluation_samples_never_reach_attack_training(loaded, monkeypatch):
    seen: list[np.ndarray] = []
    real_make_attack = work_module.make_attack  # threshold attacks are made in their own unit

    def recording_make_attack(name, options=None, **context):
        attack = real_make_attack(name, options, **context)
        real_fit = attack.fit

        def fit(features, membership, *args, **kwargs):
            seen.append(np.asarray(features.indices))
            return real_fit(features, membership, *args, **kwargs)

        attack.fit = fit
        return attack

    monkeypatch.setattr(work_module, "make_attack", recording_make_attack)
    inputs = gate_inputs(loaded)
    policy = _policy(loaded, attacks=("samia", "confidence"), attack_train_size=100)
    result = run_gate(inputs, policy)
    assert result.verdict in ("pass", "fail")
    evaluation = select_evaluation(inputs.members, inputs.holdout, inputs.labels, policy)
    assert len(seen) == 4  # two attacks × (original, pruned)
    for indices in seen:
        assert len(indices) <= 2 * 100  # attack_train_size members and as many non-members
        assert len(np.intersect1d(indices, evaluation.indices)) == 0
        assert np.isin(indices, inputs.shadow_pool).all()
        assert not np.isin(indices, inputs.members).any() and not np.isin(indices, inputs.holdout).any()


def test_reference_attacks_never_read_an_evaluation_sample_or_its_membership(loaded, monkeypatch):
    """RMIA and LiRA tune on shadows and calibration samples; their thresholds come from the auditor split."""
    seen: list[np.ndarray] = []
    thresholds: list[int] = []
    real_make_attack, real_best = gate_module.make_attack, gate_module.best_threshold

    def recording_make_attack(name, options=None, **context):
        attack = real_make_attack(name, options, **context)
        real_fit = attack.fit

        def fit(pseudo_targets, population):
            seen.extend([np.asarray(population.indices), *(t.samples.indices for t in pseudo_targets), *(t.population.indices for t in pseudo_targets)])
            return real_fit(pseudo_targets, population)

        attack.fit = fit
        return attack

    def recording_best(scores, membership):
        thresholds.append(len(membership))
        return real_best(scores, membership)

    monkeypatch.setattr(gate_module, "make_attack", recording_make_attack)
    monkeypatch.setattr(gate_module, "best_threshold", recording_best)
    inputs = gate_inputs(loaded)
    policy = _policy(loaded, attacks=("rmia", "lira"))
    result = run_gate(inputs, policy)
    assert result.verdict in ("pass", "fail"), result.reason
    data = gate_module.check_feasible(
        labels=inputs.labels, num_classes=10, members=inputs.members, holdout=inputs.holdout, shadow_pool=inputs.shadow_pool, policy=policy
    )
    assert len(seen) == 2 * 2 * (1 + 2 * 2)  # 2 attacks × 2 models × (population + 2 shadows × (samples, population))
    for indices in seen:
        assert len(np.intersect1d(indices, data.evaluation.indices)) == 0
        assert np.isin(indices, inputs.shadow_pool).all()
    assert len(np.intersect1d(data.thresholds.indices, data.evaluation.indices)) == 0
    assert thresholds == [len(data.thresholds.indices)] * 4  # every reference threshold: the auditor split alone


def test_an_error_inside_the_gate_means_not_passed(loaded):
    def broken_pipeline(members, dev, seed):
        raise RuntimeError("shadow training blew up")

    inputs = dataclasses.replace(gate_inputs(loaded), train_shadow=broken_pipeline)
    result = run_gate(inputs, _policy(loaded))
    assert result.verdict == "error" and not result.passed
    assert "shadow training blew up" in result.reason


def test_nan_figures_mean_not_passed(loaded):
    inputs = dataclasses.replace(gate_inputs(loaded), pruned_model=NaNOutputs(loaded.pruned_model), original_model=None)
    result = run_gate(inputs, _policy(loaded, attacks=("confidence", "loss")))
    assert result.verdict == "error" and not result.passed


def test_a_shadow_far_worse_than_the_victim_is_refused_with_the_reason(loaded):
    real = gate_inputs(loaded)

    def untrained_shadow(members, dev, seed):
        torch.manual_seed(seed)
        base, pruned = real.train_shadow(members[:20], dev, seed)
        return base, pruned

    inputs = dataclasses.replace(real, train_shadow=untrained_shadow)
    result = run_gate(inputs, _policy(loaded, attacks=("confidence",)))
    assert result.verdict == "error" and not result.passed
    assert "points below the victim" in result.reason


def test_too_few_evaluation_samples_is_bad_input_before_any_training(loaded):
    from gates.errors import GateInputError

    calls = []
    inputs = dataclasses.replace(gate_inputs(loaded), train_shadow=lambda *a: calls.append(a))
    with pytest.raises(GateInputError, match="at least 100 per side"):
        run_gate(inputs, _policy(loaded, eval_size=50))
    assert calls == []


def _holdout_accuracy(model: nn.Module, loaded) -> float:
    with torch.no_grad():
        predicted = model(loaded.data.x[torch.as_tensor(loaded.splits.holdout)]).argmax(1)
    return float((predicted == loaded.data.y[torch.as_tensor(loaded.splits.holdout)]).float().mean())


class _NoSignalAttack:
    """What an attack that learned nothing looks like: every score below its threshold's reach."""

    name = "confidence"
    threshold = -1.0
    threshold_source = "shadow data"

    def fit(self, features, membership, on_epoch=None):
        pass

    def score(self, features):
        return np.zeros(len(features))


def test_an_attack_that_found_no_signal_is_named_in_the_warnings(loaded, monkeypatch):
    monkeypatch.setattr(work_module, "make_attack", lambda name, options=None, **context: _NoSignalAttack())
    result = run_gate(gate_inputs(loaded), _policy(loaded, attacks=("confidence",)))
    assert result.pruned.metrics("confidence").advantage == 0.0
    assert any("calls every sample a member" in w for w in result.warnings)
