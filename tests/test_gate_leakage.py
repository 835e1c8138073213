"""The gate on models whose leakage is known: it must see a leak that is there, and not one that is not.

Every test runs the whole gate (shadows re-running the recipe, every default attack), so they
are marked slow; `make test` still runs them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_tiny_recipe

from gates.gate import run_gate
from prunectl.api import load_run, prune
from prunectl.stages.gate import gate_inputs, gate_policy
from prunectl.recipe import GateSpec

pytestmark = pytest.mark.slow


def test_a_deliberately_overfit_model_fails_the_gate_by_a_wide_margin(tmp_path):
    """150 members, 150 epochs, 100% train accuracy: measured gated advantage 0.38, AUC 0.69–0.72."""
    recipe = make_tiny_recipe(
        data__members=150,
        data__dev=40,
        data__holdout=300,
        data__shadow_pool=480,  # 100 calibration samples; each shadow trains on 190 = members + dev, like the victim
        model__widths=(128,),
        train__epochs=150,
        prune__target_sparsity=0.5,
        prune__rounds=2,
        prune__epochs_per_round=5,
    )
    trained = prune(recipe, out=tmp_path / "overfit")
    assert trained.pruned_member_accuracy - trained.pruned_accuracy > 0.03  # it did overfit
    loaded = load_run(tmp_path / "overfit")
    result = run_gate(gate_inputs(loaded), gate_policy(loaded.recipe, GateSpec(audit_original=False, calibration_size=100)))
    assert result.verdict == "fail" and not result.passed
    for name in ("rmia", "lira"):
        assert result.pruned.metrics(name).auc > 0.7  # the reference attacks see the overfit model
    assert result.gated_value > 0.25
    deciding = result.pruned.metrics(result.deciding_attack)
    assert deciding.advantage_low > 0.15
    assert max(m.auc for m in result.pruned.attacks) > 0.65


def test_two_disjoint_samples_of_non_members_look_alike_to_every_attack(tmp_path):
    """No sample in either set was trained on, so the true advantage is 0: every attack's 95%
    interval must contain 0 in at least 9 of 10 gate seeds."""
    recipe = make_tiny_recipe(
        data__holdout=400,
        data__shadow_pool=520,  # each shadow trains on 260 = members + dev, like the victim
        model__widths=(64,),
        prune__epochs_per_round=3,  # steadier than the tiny recipe's 1: shadows land near the victim's accuracy
    )
    prune(recipe, out=tmp_path / "null")
    loaded = load_run(tmp_path / "null")
    real = gate_inputs(loaded)
    holdout = np.random.default_rng(0).permutation(real.holdout)
    pretend_members, nonmembers = np.sort(holdout[:200]), np.sort(holdout[200:])
    inputs = dataclasses.replace(real, members=pretend_members, holdout=nonmembers, original_model=None)
    contains_zero: dict[str, int] = {}
    for seed in range(10):
        policy = dataclasses.replace(gate_policy(loaded.recipe, GateSpec(shadows=1, bootstrap=500)), seed=seed)
        result = run_gate(inputs, policy)
        assert result.verdict in ("pass", "fail"), result.reason
        for metrics in result.pruned.attacks:
            covered = metrics.advantage_low <= 0 <= metrics.advantage_high
            contains_zero[metrics.attack] = contains_zero.get(metrics.attack, 0) + covered
    assert len(contains_zero) == 8  # SAMIA, the threshold family, RMIA and LiRA
    assert all(count >= 9 for count in contains_zero.values()), contains_zero


@pytest.fixture(scope="module")
def null_run(tmp_path_factory):
    """A trained run with 800 holdout samples: halves of it make null evaluation sets of 320 per side."""
    recipe = make_tiny_recipe(data__holdout=800, model__widths=(64,), prune__epochs_per_round=3)
    out = tmp_path_factory.mktemp("null") / "run"
    prune(recipe, out=out)
    return load_run(out)


@pytest.mark.parametrize("split", [0, 1, 2])
def test_no_signal_data_passes_every_default_criterion(null_run, split):
    """Three independent null splits (half the holdout claimed as members), the default criteria
    and attacks, end to end: no sample on either side was trained on, so the gate must pass."""
    real = gate_inputs(null_run)
    holdout = np.random.default_rng(1000 + split).permutation(real.holdout)
    inputs = dataclasses.replace(real, members=np.sort(holdout[:400]), holdout=np.sort(holdout[400:]), original_model=None)
    policy = dataclasses.replace(gate_policy(null_run.recipe, GateSpec(shadows=2, bootstrap=200)), seed=split)
    result = run_gate(inputs, policy)
    assert result.verdict == "pass", result.reason
    assert result.criterion("advantage").status == "pass"
    assert result.criterion("tpr_at_fpr").status in ("pass", "not resolvable")
