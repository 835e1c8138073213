"""Channel pruning (`prune.structure = "channel"`): whole channels removed through Torch-Pruning's
dependency graph, rounded channel counts, a plan recorded as data and replayed to rebuild the
model, refusals before training, and the gate and export on what it ships."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from conftest import compress_release, make_tiny_recipe
from prunectl import api
from prunectl.config import to_toml
from prunectl.errors import IntegrityError
from prunectl.faults import FAULT_ENV
from prunectl.models import SmallCNN, is_channels_last
from prunectl.pruning.channels import (
    ChannelPlan,
    ChannelPruner,
    ChannelPruningError,
    PlanError,
    channel_counts,
    channel_tolerance,
    conv_linear_weights,
    replay,
)

ARCHITECTURES = {
    "builtin cnn, 8x8": (lambda: SmallCNN(1, 8, 8, 10), (1, 8, 8)),
    "builtin cnn, 28x28": (lambda: SmallCNN(1, 28, 28, 10), (1, 28, 28)),
    "resnet18, 32x32": (lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32)),
    "mobilenet_v2, 32x32": (lambda: torchvision.models.mobilenet_v2(num_classes=10), (3, 32, 32)),
}

CHANNEL_RECIPE = {"model__source": "builtin:cnn", "prune__structure": "channel", "prune__target_sparsity": 0.8}


def _prune_once(build, shape, target: float, scope: str) -> tuple[nn.Module, nn.Module, ChannelPlan]:
    torch.manual_seed(0)
    dense = build()
    model = build()
    model.load_state_dict(dense.state_dict())
    example = torch.zeros(1, *shape)
    pruner = ChannelPruner(model, example, round_to=8, importance="l1", keep_first=False)
    keep = pruner.plan_round(target, conv_linear_weights(dense), {g.root: g.channels for g in pruner.groups}, scope)
    predicted = pruner.weights(keep)
    plan = ChannelPlan(8, conv_linear_weights(dense)).extended(pruner.prune(keep, 1))
    assert conv_linear_weights(model) == predicted, "the search's weight count must be what pruning leaves"
    return dense, model, plan


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_channel_pruning_reaches_the_target_with_channel_counts_in_multiples_of_8(architecture, scope):
    build, shape = ARCHITECTURES[architecture]
    dense, pruned, _ = _prune_once(build, shape, 0.9, scope)
    sparsity = 1 - conv_linear_weights(pruned) / conv_linear_weights(dense)
    assert abs(sparsity - 0.9) <= channel_tolerance(0.9) == 0.02, sparsity
    before, after = channel_counts(dense), channel_counts(pruned)
    classifier = list(before)[-1]
    assert after[classifier] == before[classifier] == 10, "the classifier's outputs are the classes"
    assert all(count % 8 == 0 and count >= 8 for name, count in after.items() if name != classifier), after
    assert any(after[name] < before[name] for name in before)
    first_conv = next(m for m in pruned.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == shape[0], "the data's input channels are never pruned"
    with torch.no_grad():
        assert pruned.eval()(torch.randn(3, *shape)).shape == (3, 10)


@pytest.mark.parametrize("architecture", ["builtin cnn, 28x28", "resnet18, 32x32", "mobilenet_v2, 32x32"])
def test_a_model_rebuilt_from_its_plan_and_state_dict_equals_the_pruned_one_bit_for_bit(architecture):
    build, shape = ARCHITECTURES[architecture]
    _, pruned, plan = _prune_once(build, shape, 0.7, "global")
    plan = ChannelPlan.from_json(plan.to_json())  # through the file format
    torch.manual_seed(1)  # a different initialisation: every value must come from the state dict
    rebuilt = replay(build(), plan, torch.zeros(1, *shape))
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert torch.equal(pruned.eval()(x), rebuilt.eval()(x))
    assert all(torch.equal(a, b) for a, b in zip(pruned.state_dict().values(), rebuilt.state_dict().values()))


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        (lambda plan: plan["steps"][0].update(module="__class__.__init__"), "not a conv or linear layer"),
        (lambda plan: plan["steps"][0].update(module="classifier.1.weight"), "not a conv or linear layer"),
        (lambda plan: plan["steps"][0]["indices"].append(10_000), "outside its"),
        (lambda plan: plan["steps"][0]["indices"].append(plan["steps"][0]["indices"][0]), "repeated"),
        (lambda plan: plan["steps"][0].update(indices="0,1"), "malformed"),
        (lambda plan: plan.update(format="pickle"), "not a prunectl channel plan"),
        (lambda plan: plan["steps"][0].update(code="print('hi')"), "malformed"),
    ],
)
def test_a_malformed_or_hostile_plan_is_refused_before_it_touches_the_model(tamper, said):
    build, shape = ARCHITECTURES["builtin cnn, 8x8"]
    _, _, plan = _prune_once(build, shape, 0.7, "global")
    raw = plan.to_dict()
    tamper(raw)
    with pytest.raises(PlanError, match=said):
        replay(build(), ChannelPlan.from_dict(raw), torch.zeros(1, *shape))


def test_an_unreachable_target_is_refused_before_any_training(tmp_path):
    out = tmp_path / "run"
    refused = subprocess.run(
        [sys.executable, "-m", "prunectl.cli", "prune", "--model", "builtin:cnn", "--structure", "channel", "--target-sparsity", "0.999", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "out of reach of channel pruning" in lines[0] and "Traceback" not in refused.stderr
    assert not out.exists(), "a refusal writes nothing"


def test_a_torchscript_model_is_refused_for_channel_pruning(tmp_path):
    archive = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))), str(archive))
    recipe = make_tiny_recipe(model__source=f"torchscript:{archive}", prune__structure="channel")
    with pytest.raises(ChannelPruningError, match="TorchScript archive cannot be channel-pruned"):
        api.prune(recipe, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def channel_run(tmp_path_factory: pytest.TempPathFactory):
    recipe = make_tiny_recipe(**CHANNEL_RECIPE)
    out = tmp_path_factory.mktemp("channel") / "run"
    return api.prune(recipe, out=out), out, recipe


def test_a_channel_run_reports_what_it_removed_and_the_saved_model_is_physically_smaller(channel_run):
    result, out, recipe = channel_run
    assert abs(result.sparsity["global_sparsity"] - 0.8) <= result.structure["tolerance"] == channel_tolerance(0.8)
    assert "every conv and linear weight of the dense model" in result.sparsity["denominator"]
    structure = result.structure
    assert structure["structure"] == "channel" and structure["macs"]["pruned"] < structure["macs"]["dense"]
    assert structure["parameters"]["pruned"] < 0.35 * structure["parameters"]["dense"]
    assert all(v["kept"] % 8 == 0 for name, v in structure["channels"].items() if name != "classifier.3")
    saved = torch.load(out / "pruned.pt", weights_only=True)
    assert sum(t.numel() for t in saved.values()) == structure["parameters"]["pruned"] + sum(
        t.numel() for k, t in saved.items() if "running" in k or "num_batches" in k
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert "plan.json" in manifest["files"]


def test_load_run_rebuilds_the_channel_pruned_model_exactly_as_trained(channel_run):
    result, out, recipe = channel_run
    loaded = api.load_run(out)
    last_round = torch.load(out / "checkpoints" / f"round-{recipe.prune.rounds}.pt", weights_only=True)
    state = loaded.pruned_model.state_dict()
    assert state.keys() == last_round["model"].keys()
    assert all(torch.equal(state[k], last_round["model"][k]) for k in state)
    assert loaded.checkpoints_sha256.keys() == {"base.pt", "pruned.pt", "plan.json"}
    assert is_channels_last(loaded.pruned_model), "Torch-Pruning's sliced weights are put back in the builtin CNN's layout"


def _prunectl(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    # at this process's thread count: the runs it is compared with trained here, and torch's floats depend on it
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV} | {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    if fault is not None:
        env[FAULT_ENV] = fault
    return subprocess.run([sys.executable, "-m", "prunectl.cli", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_a_channel_prune_killed_mid_round_resumes_to_identical_weights(channel_run, tmp_path):
    _, straight, recipe = channel_run
    config = tmp_path / "recipe.toml"
    config.write_text(to_toml(recipe))
    out = tmp_path / "run"
    crashed = _prunectl(["prune", "--config", str(config), "--out", str(out)], fault="kill@round-2-epoch-1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = _prunectl(["prune", "--resume", str(out), "--json"])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from_round"] == 1
    a, b = (torch.load(run / "pruned.pt", weights_only=True) for run in (straight, out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (straight / "plan.json").read_bytes() == (out / "plan.json").read_bytes()


def test_a_tampered_plan_file_is_refused_in_one_line_with_exit_2(channel_run, tmp_path):
    _, out, _ = channel_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    plan = json.loads((run / "plan.json").read_text())
    plan["steps"][0]["module"] = "features.__class__"
    (run / "plan.json").write_text(json.dumps(plan))
    refused = _prunectl(["export", str(run)])
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "channel plan" in refused.stderr
    assert not (run / "export").exists()


@pytest.mark.parametrize("defense", ["kl", "wemem"])
def test_every_defense_runs_unchanged_under_channel_pruning(defense, tmp_path):
    """Defenses hook into fine-tuning (losses, batches, optimizer overrides), not into the weights' shapes."""
    helpers = {"defense__memscore_models": 4} if defense == "wemem" else {}  # the fewest it allows: 4 trainings, not 8
    recipe = make_tiny_recipe(**CHANNEL_RECIPE, defense__name=defense, **helpers)
    result = api.prune(recipe, out=tmp_path / "run", cache_dir=tmp_path / "cache")
    assert result.defense["name"] == defense
    assert abs(result.sparsity["global_sparsity"] - 0.8) <= result.structure["tolerance"]
    assert result.pruned_accuracy > 0.5


@pytest.fixture(scope="module")
def channel_release(tmp_path_factory: pytest.TempPathFactory):
    return compress_release(tmp_path_factory.mktemp("channel-release"), **CHANNEL_RECIPE)


@pytest.mark.slow
def test_a_channel_release_is_a_smaller_dense_onnx_with_parity_on_the_whole_holdout(channel_release):
    result, run = channel_release
    export = json.loads((run / "export" / "export.json").read_text())
    loaded = api.load_run(run)
    assert export["report"]["parity"]["passed"] and export["report"]["parity"]["samples"] >= len(loaded.splits.holdout)
    assert export["report"]["sizes"]["sparse_tensors"] == 0, "nothing left to store sparse: the zeros are gone"
    assert (run / "export" / "model.onnx").stat().st_size < 0.4 * (run / "export" / "baseline" / "model.onnx").stat().st_size
    assert result.latency.file_ratio < 0.4 and result.latency.peak_rss_ratio is not None
    assert all(check.passed for check in api.verify(run).checks)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["gate"]["checkpoints_sha256"]["plan.json"] == loaded.checkpoints_sha256["plan.json"], "the gate audited the plan too"
    report = json.loads((run / "gate" / "report.json").read_text())
    assert report["pruned"]["holdout_accuracy"] == pytest.approx(result.pruned_accuracy, abs=1e-6), "the gate audited the model that ships"


@pytest.mark.slow
def test_a_plan_changed_after_the_audit_is_an_integrity_failure(channel_release, tmp_path):
    _, released = channel_release
    run = tmp_path / "run"
    shutil.copytree(released, run)
    plan = json.loads((run / "plan.json").read_text())
    step = plan["steps"][-1]
    step["indices"] = [i + 1 if i + 1 not in step["indices"] else i for i in step["indices"]]  # other, still valid channels
    (run / "plan.json").write_text(json.dumps(plan))
    checks = {check.name: check for check in api.verify(run, parity=False).checks}
    assert not checks["gate"].passed and "plan.json changed" in checks["gate"].detail
    verified = _prunectl(["verify", str(run), "--no-parity"])
    assert verified.returncode == 1
    audited = json.loads((released / "manifest.json").read_text())["gate"]["checkpoints_sha256"]
    with pytest.raises(IntegrityError, match="plan.json changed after the gate audited"):
        api.export(run, out=tmp_path / "export", audited_sha256=audited["pruned.pt"], audited_plan_sha256=audited["plan.json"])
    assert not (tmp_path / "export").exists()
