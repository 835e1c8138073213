"""`prunectl export` turns a finished run into a checked ONNX artifact and records its hashes."""

import hashlib
import json

import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from exporters import read_metadata
from prunectl.api import export, load_run
from prunectl.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    _, run_dir = tiny_run
    out = tmp_path_factory.mktemp("export")
    return export(run_dir, out=out), run_dir, out


def test_export_writes_the_model_the_xz_artifact_and_a_dense_baseline(exported):
    result, _, out = exported
    for name in ("model.onnx", "model.onnx.xz", "export.json", "baseline/model.onnx"):
        assert (out / name).is_file(), name
    onnx.checker.check_model(onnx.load(str(out / "model.onnx")))
    assert result.report["sizes"]["onnx_bytes"] < result.report["sizes"]["dense_onnx_bytes"]


def test_the_onnx_model_predicts_like_the_pruned_torch_model_on_holdout(exported, tiny_run):
    result, run_dir, out = exported
    loaded = load_run(run_dir)
    x = loaded.data.x[loaded.splits.holdout].numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    accuracy = float((logits.argmax(1) == loaded.data.y[loaded.splits.holdout].numpy()).mean())
    assert accuracy == pytest.approx(tiny_run[0].pruned_accuracy)
    assert result.report["parity"]["passed"] is True


def test_the_file_carries_what_a_device_needs(exported):
    _, _, out = exported
    metadata = read_metadata(out / "model.onnx")
    assert metadata.class_names == tuple(str(i) for i in range(10))
    assert metadata.input_shape == (1, 8, 8)
    assert metadata.mean == (0.5,) and metadata.std == (0.5,)
    assert float(metadata.extra["scale"]) == pytest.approx(1 / 16)


def test_the_manifest_records_the_hash_of_the_shipped_file(exported):
    _, run_dir, out = exported
    manifest = json.loads((run_dir / "manifest.json").read_text())
    digest = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert manifest["export"]["files"]["model.onnx"] == digest


def test_cli_export_defaults_to_the_run_directory_and_prints_json(tmp_path, tiny_recipe):
    from prunectl.api import prune

    run_dir = tmp_path / "r"
    prune(tiny_recipe, out=run_dir)
    result = runner.invoke(app, ["export", str(run_dir), "--format", "onnx", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["report"]["onnx_path"] == str(run_dir / "export" / "model.onnx")


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda p: None, "is not a prunectl run directory"),
        (lambda p: (p.mkdir(), (p / "recipe.toml").write_text("seed = 0\n")), "unfinished run"),
    ],
)
def test_cli_export_refuses_what_is_not_a_finished_run(tmp_path, setup, fragment):
    target = tmp_path / "run"
    setup(target)
    result = runner.invoke(app, ["export", str(target)])
    assert result.exit_code == 2
    assert fragment in result.output and "Traceback" not in result.output


def test_cli_export_rejects_an_invalid_opset(tiny_run):
    _, run_dir = tiny_run
    result = runner.invoke(app, ["export", str(run_dir), "--opset", "3", "--out", str(run_dir / "x")])
    assert result.exit_code == 2 and "export.opset = 3 is invalid" in result.output


def test_a_failed_export_leaves_the_previous_artifact_untouched(tiny_run, tmp_path, monkeypatch):
    import exporters
    from exporters import ParityError

    _, run_dir = tiny_run
    out = tmp_path / "export"
    export(run_dir, out=out)
    before = (out / "model.onnx").read_bytes()
    calls = []
    real = exporters.export_model

    def fail_on_baseline(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ParityError("simulated parity failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(exporters, "export_model", fail_on_baseline)
    with pytest.raises(ParityError):
        export(run_dir, out=out)
    assert (out / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["baseline", "export.json", "model.onnx", "model.onnx.xz"]
