"""`export.quantize = "int8"`: the release artifact is INT8, quantised before the gate, and the
gate audits that INT8 model (its shadows quantised the same way); export and verify prove the
shipped INT8 file is the audited one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import compress_release
from gates.features import compute_features
from prunectl import api
from prunectl.errors import IntegrityError
from prunectl.quantized import graph_sha256, int8_model, int8_sensitivity_eps

INT8_RECIPE = {"model__source": "builtin:cnn", "prune__structure": "channel", "prune__target_sparsity": 0.8, "export__quantize": "int8"}


@pytest.fixture(scope="module")
def int8_release(tmp_path_factory: pytest.TempPathFactory):
    return compress_release(tmp_path_factory.mktemp("int8"), **INT8_RECIPE)


@pytest.mark.slow
def test_the_gate_audits_the_int8_model_that_ships_and_verify_proves_it(int8_release):
    result, run = int8_release
    assert result.artifact.path.endswith("model.int8.onnx")
    report = json.loads((run / "gate" / "report.json").read_text())
    settings = report["settings"]
    assert "INT8" in settings["audited_model"] and "shadows quantised the same way" in settings["audited_model"]
    shipped = (run / "export" / "model.int8.onnx").read_bytes()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["gate"]["int8_graph_sha256"] == graph_sha256(shipped)
    checks = {check.name: check for check in api.verify(run).checks}
    assert all(check.passed for check in checks.values()), checks
    assert "int8" in checks and checks["release"].passed


@pytest.mark.slow
def test_the_int8_sensitivity_features_are_not_all_zero_because_eps_is_scaled_to_the_input_step(int8_release):
    _, run = int8_release
    loaded = api.load_run(run)
    victim = int8_model(loaded.pruned_model, loaded.recipe, loaded.data, loaded.splits.members)
    assert victim.input_scale is not None and victim.input_scale > 1e-3, "the trap: the input step is wider than the default eps"
    rows = loaded.splits.holdout[:64]
    labels = loaded.data.y.numpy()
    scaled = int8_sensitivity_eps(1e-3, victim.input_scale)
    report = json.loads((run / "gate" / "report.json").read_text())
    assert report["settings"]["sensitivity_eps"] == pytest.approx(scaled)

    def sensitivity(model, eps):
        return compute_features(model, loaded.data.x, labels, rows, num_classes=10, eps=eps, seed=0).sensitivity.sum(axis=1)

    int8, fp32 = sensitivity(victim, scaled), sensitivity(loaded.pruned_model, scaled)
    assert (int8 > 0).all()
    ratio = int8 / fp32
    assert 0.7 < np.median(ratio) < 1.4 and np.corrcoef(int8, fp32)[0, 1] > 0.8, "scaled, it measures what the fp32 model's does"
    # At the default 1e-3 single rounding flips of the input, divided by eps, dominate: spikes.
    spiky = sensitivity(victim, 1e-3) / sensitivity(loaded.pruned_model, 1e-3)
    assert np.median(spiky) > 2


@pytest.mark.slow
def test_an_int8_graph_other_than_the_audited_one_is_refused_and_nothing_is_exported(int8_release, tmp_path):
    _, run = int8_release
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "export" / "model.int8.onnx").read_bytes()
    with pytest.raises(IntegrityError, match="not the one the gate audited"):
        api.export(copy, audited_int8_graph_sha256="0" * 64)
    assert (copy / "export" / "model.int8.onnx").read_bytes() == before
    assert not list(tmp_path.glob("run/.export.staging*"))


@pytest.mark.slow
def test_verify_fails_when_the_shipped_int8_file_is_swapped_for_another_model(int8_release, tmp_path):
    _, run = int8_release
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.copyfile(copy / "export" / "model.onnx", copy / "export" / "model.int8.onnx")
    checks = {check.name: check for check in api.verify(copy, parity=False).checks}
    assert not checks["int8"].passed and "not the INT8 model the gate audited" in checks["int8"].detail
    assert not checks["release"].passed


def test_int8_models_of_the_same_weights_and_calibration_are_identical(int8_release):
    _, run = int8_release
    loaded = api.load_run(run)
    a = int8_model(loaded.pruned_model, loaded.recipe, loaded.data, loaded.splits.members)
    b = int8_model(loaded.pruned_model, loaded.recipe, loaded.data, loaded.splits.members)
    assert a.onnx_bytes == b.onnx_bytes
    x = loaded.data.x[torch.as_tensor(loaded.splits.holdout[:32])]
    assert np.array_equal(a(x).numpy(), b(x).numpy())
