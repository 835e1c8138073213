"""`prunectl verify`: a release pipeline can prove the shipped ONNX is the model that passed the gate.

Every test works on a copy of one passing `compress` run and tampers with one thing the way a
mistake or an attacker would; verification must name what no longer holds and exit 1.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from prunectl import api
from prunectl.cli import app
from prunectl.errors import IntegrityError
from prunectl.stages.export import export_metadata

runner = CliRunner()


@pytest.fixture()
def run_copy(released_run, tmp_path: Path) -> Path:
    target = tmp_path / "release"
    shutil.copytree(released_run[1], target)
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _edit_manifest(run: Path, edit: Callable[[dict], None]) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))


def _verify(run: Path, *extra: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["verify", str(run), "--json", *extra])
    payload = json.loads(result.stdout[result.stdout.index("{") :]) if "{" in result.stdout else {}
    return result.exit_code, payload, result.output


def _failed(payload: dict) -> set[str]:
    return {check["name"] for check in payload["checks"] if not check["passed"]}


def test_a_released_run_verifies_with_every_check_passing_and_nothing_written(run_copy):
    before = _tree_digest(run_copy)
    code, payload, output = _verify(run_copy)
    assert code == 0, output
    assert payload["passed"] is True
    assert {c["name"] for c in payload["checks"]} == {"files", "gate", "export", "xz", "release", "parity"}
    assert payload["artifact_sha256"] == _sha256(run_copy / "export" / "model.onnx")
    assert "verified:" in output
    assert _tree_digest(run_copy) == before, "verify never writes into the run directory"


def test_the_onnx_file_names_the_checkpoint_the_gate_audited(run_copy):
    from exporters import read_metadata

    manifest = json.loads((run_copy / "manifest.json").read_text())
    extra = read_metadata(run_copy / "export" / "model.onnx").extra
    assert extra["pruned_sha256"] == manifest["gate"]["checkpoints_sha256"]["pruned.pt"] == _sha256(run_copy / "pruned.pt")
    assert manifest["export"]["source_checkpoint_sha256"] == extra["pruned_sha256"]
    assert extra["privacy_gate"].startswith("passed")


def _append_a_byte_to_the_onnx(run: Path) -> None:
    with (run / "export" / "model.onnx").open("ab") as handle:
        handle.write(b"\0")


def _swap_the_xz(run: Path) -> None:
    (run / "export" / "model.onnx.xz").write_bytes(lzma.compress(b"another model"))


def _retrain_a_weight_after_the_gate(run: Path) -> None:
    state = torch.load(run / "pruned.pt", weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 1e-3
    torch.save(state, run / "pruned.pt")


def _edit_the_gate_summary(run: Path) -> None:
    (run / "gate" / "summary.md").write_text("# all good, trust me\n")


def _record_a_failed_gate(run: Path) -> None:
    def edit(manifest: dict) -> None:
        manifest["gate"].update(passed=False, verdict="fail", reason="samia advantage 0.4 exceeds max_advantage 0.1")

    _edit_manifest(run, edit)


def _garble_the_manifest(run: Path) -> None:
    (run / "manifest.json").write_text("{ not json")


def _remove_the_export(run: Path) -> None:
    shutil.rmtree(run / "export")
    _edit_manifest(run, lambda manifest: manifest.pop("export"))


def _ship_the_unpruned_model_under_the_audited_name(run: Path) -> None:
    """The hardest forgery: a well-formed ONNX of another model that claims the audited
    checkpoint, with every hash in the manifest updated to match. Only parity can catch it."""
    from exporters import export_model

    loaded = api.load_run(run)
    audited = loaded.checkpoints_sha256["pruned.pt"]
    holdout = loaded.data.x[torch.as_tensor(loaded.splits.holdout)]
    metadata = export_metadata(loaded, "passed: forged", audited)
    export_model(loaded.base_model, holdout[:1], run / "export", metadata=metadata, parity_inputs=holdout[:8])
    onnx_sha, xz_sha = _sha256(run / "export" / "model.onnx"), _sha256(run / "export" / "model.onnx.xz")

    def edit(manifest: dict) -> None:
        manifest["export"]["files"].update({"model.onnx": onnx_sha, "model.onnx.xz": xz_sha})
        manifest["release"]["artifact"]["sha256"] = onnx_sha

    _edit_manifest(run, edit)


@pytest.mark.parametrize(
    ("tamper", "failing"),
    [
        (_append_a_byte_to_the_onnx, {"export", "xz", "release", "parity"}),
        (_swap_the_xz, {"export", "xz"}),
        (_retrain_a_weight_after_the_gate, {"files", "gate", "parity"}),
        (_edit_the_gate_summary, {"gate"}),
        (_record_a_failed_gate, {"gate"}),
        (_remove_the_export, {"export", "xz", "release", "parity"}),
        (_ship_the_unpruned_model_under_the_audited_name, {"parity"}),
    ],
    ids=lambda value: value.__name__.strip("_").replace("_", " ") if callable(value) else None,
)
def test_any_tampering_fails_verification_with_exit_1_naming_what_broke(run_copy, tamper, failing):
    tamper(run_copy)
    code, payload, output = _verify(run_copy)
    assert code == 1, output
    assert payload["passed"] is False
    assert _failed(payload) == failing
    assert "NOT verified" in output and "Traceback" not in output


def test_an_unreadable_manifest_fails_closed(run_copy):
    _garble_the_manifest(run_copy)
    code, payload, _ = _verify(run_copy)
    assert code == 1
    assert _failed(payload) == {"manifest"}


def test_a_gate_looser_than_the_release_policy_fails_the_threshold_check(run_copy):
    code, payload, _ = _verify(run_copy, "--max-advantage", "0.1", "--no-parity")
    assert code == 1
    assert _failed(payload) == {"threshold"}
    assert "looser than the required 0.1" in next(c["detail"] for c in payload["checks"] if c["name"] == "threshold")
    code, payload, _ = _verify(run_copy, "--max-advantage", "0.5", "--no-parity")
    assert code == 0, payload


@pytest.mark.parametrize("setup", ["not a run", "unfinished run"])
def test_what_is_not_a_finished_run_is_bad_input_with_exit_2(tmp_path, run_copy, setup):
    if setup == "unfinished run":
        (run_copy / "manifest.json").unlink()
        target = run_copy
    else:
        target = tmp_path / "empty"
        target.mkdir()
    result = runner.invoke(app, ["verify", str(target)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_export_refuses_a_checkpoint_that_changed_since_the_audit_and_exits_1(run_copy):
    before = _tree_digest(run_copy / "export")
    with pytest.raises(IntegrityError, match="changed after the gate audited it"):
        api.export(run_copy, audited_sha256="0" * 64)
    assert _tree_digest(run_copy / "export") == before, "nothing was exported"

    from prunectl.commands._common import handle_errors

    @handle_errors()
    def command() -> None:
        api.export(run_copy, audited_sha256="0" * 64)

    import typer

    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == 1
