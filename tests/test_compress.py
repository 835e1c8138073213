"""`prunectl compress`: one release step — prune, gate, and export only what passed.

One passing run (through the CLI, with its recipe split over a discovered prunectl.toml, the
environment and flags) is shared by most tests; the failing cases re-gate copies of it with
`--resume`, which skips the training and keeps the suite fast.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import onnx
import pytest
from conftest import make_tiny_recipe
from typer.testing import CliRunner

from prunectl import api
from prunectl.cli import app
from prunectl.config import to_toml
from prunectl.files import file_sha256
from prunectl.recipe import Recipe

runner = CliRunner()
QUICK_GATE = {"gate__shadows": 2, "gate__bootstrap": 200}


def tiny_release_recipe(**changes: object) -> Recipe:
    return make_tiny_recipe(**{**QUICK_GATE, **changes})


def _json_from(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") :])


@pytest.fixture(scope="module")
def passed_run(tmp_path_factory: pytest.TempPathFactory):
    """`prunectl compress` in a project directory holding prunectl.toml, with one value from
    the environment overriding the file and one flag overriding the environment."""
    project = tmp_path_factory.mktemp("project")
    (project / "prunectl.toml").write_text(to_toml(tiny_release_recipe(gate__max_advantage=0.5)))
    cache = project / "cache"
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("PRUNECTL_")]:
            patch.delenv(key)
        patch.chdir(project)
        env = {"PRUNECTL_PRUNE_TARGET_SPARSITY": "0.7", "PRUNECTL_GATE_MAX_ADVANTAGE": "0.6", "XDG_CACHE_HOME": str(cache)}
        result = runner.invoke(app, ["compress", "--max-advantage", "0.7", "--out", "runs/release", "--cache-dir", str(cache), "--json"], env=env)
    return result, project / "runs" / "release", project


def test_a_passing_run_exits_0_and_writes_the_release_artifact(passed_run):
    result, run, _ = passed_run
    assert result.exit_code == 0, result.output
    assert (run / "export" / "model.onnx").is_file() and (run / "export" / "model.onnx.xz").is_file()
    assert (run / "export" / "bench.json").is_file()
    for report in ("report.json", "junit.xml", "summary.md", "roc.png"):
        assert (run / "gate" / report).is_file()
    assert not (run / "export" / "quarantine").exists()
    stored = onnx.load(run / "export" / "model.onnx")
    assert {p.key: p.value for p in stored.metadata_props}["x.privacy_gate"].startswith("passed")


def test_the_json_result_carries_the_verdict_and_every_headline_figure(passed_run):
    result, run, _ = passed_run
    printed = _json_from(result.stdout)
    assert printed["passed"] is True and printed["released"] is True and printed["gate"]["verdict"] == "pass"
    assert printed["artifact"]["path"] == str(Path("runs/release/export/model.onnx"))
    assert 0 < printed["artifact"]["size_ratio"] < 1
    assert printed["latency"]["latency_ratio"] > 0
    assert printed["sparsity"] == pytest.approx(0.7, abs=0.005)
    assert set(printed["seconds"]) == {"prune", "gate", "export", "bench", "total"}


def test_values_come_from_flag_over_environment_over_the_discovered_file(passed_run):
    result, _, _ = passed_run
    printed = _json_from(result.stdout)
    assert printed["recipe"]["gate"]["max_advantage"] == 0.7 and printed["origins"]["gate.max_advantage"] == "flag"
    assert printed["recipe"]["prune"]["target_sparsity"] == 0.7 and printed["origins"]["prune.target_sparsity"] == "env"
    assert printed["recipe"]["data"]["members"] == 200 and printed["origins"]["data.members"] == "file"
    assert printed["config_file"].endswith("prunectl.toml")
    summary = " ".join(result.stderr.split())
    assert "flags: gate.max_advantage=0.7" in summary
    assert "environment: prune.target_sparsity=0.7" in summary
    assert "prunectl.toml: name=tiny, data.members=200" in summary
    assert "gate.attacks" not in summary, "file values equal to the defaults are not listed"


def test_the_ten_second_summary_names_accuracy_sparsity_verdict_size_latency_and_artifact(passed_run):
    summary = " ".join(passed_run[0].stderr.split())
    for needle in ("accuracy", "→", "sparsity", "gate PASSED", "≤ 0.7", "ONNX", "× the dense model", "latency", "runs/release/export/model.onnx"):
        assert needle in summary, needle


def test_the_manifest_records_hashes_versions_metrics_verdict_and_time_per_stage(passed_run):
    _, run, _ = passed_run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stage"] == "released"
    assert len(manifest["recipe_sha256"]) == 64
    assert {"prunectl", "torch", "onnx", "onnxruntime", "python"} <= set(manifest["versions"])
    assert set(manifest["splits"]) == {"members", "dev", "holdout", "shadow_pool"}
    assert manifest["splits"]["members"]["size"] == 200 and len(manifest["splits"]["members"]["sha256"]) == 64
    assert {"base.pt", "pruned.pt"} <= set(manifest["files"])
    assert manifest["gate"]["checkpoints_sha256"]["pruned.pt"] == manifest["files"]["pruned.pt"]
    release = manifest["release"]
    assert release["verdict"] == "pass" and release["released"] is True
    assert release["artifact"]["sha256"] == file_sha256(run / "export" / "model.onnx")
    assert manifest["export"]["files"]["model.onnx"] == release["artifact"]["sha256"]
    headline = release["headline"]
    assert {"base_accuracy", "pruned_accuracy", "sparsity", "gate", "latency"} <= set(headline)
    assert headline["gate"]["advantage"] is not None and headline["gate"]["max_advantage"] == 0.7
    assert set(release["seconds"]) == {"prune", "gate", "export", "bench", "total"}


def test_the_api_returns_the_same_verdict_as_the_cli_and_overwrites_a_finished_run(passed_run, tmp_path):
    result, run, project = passed_run
    printed = _json_from(result.stdout)
    recipe = api.resolve_recipe(config=run / "recipe.toml", env={}).recipe
    target = tmp_path / "again"
    shutil.copytree(run, target)
    outcome = api.compress(recipe, out=target, overwrite=True, cache_dir=project / "cache")
    assert isinstance(outcome, api.RunResult)
    assert outcome.passed is printed["passed"] and outcome.gate.verdict == printed["gate"]["verdict"]
    assert outcome.gate.advantage == pytest.approx(printed["gate"]["advantage"])
    assert outcome.gate.deciding_attack == printed["gate"]["deciding_attack"]
    assert outcome.artifact is not None and outcome.artifact.sha256 == printed["artifact"]["sha256"]


@pytest.fixture()
def run_copy(passed_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(passed_run[1], target)
    return target


def test_a_failed_gate_exits_1_and_removes_every_release_artifact(run_copy, tmp_path):
    arguments = ["compress", "--config", str(run_copy / "recipe.toml"), "--out", str(run_copy), "--resume", "--strict", "--max-advantage", "0"]
    result = runner.invoke(app, [*arguments, "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert result.exit_code == 1, result.output
    assert not (run_copy / "export").exists()
    assert "gate FAILED" in result.stderr and "none: the gate did not pass" in result.stderr
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert manifest["stage"] == "gate-failed" and manifest["release"]["artifact"] is None
    assert "export" not in manifest and "bench" not in manifest
    assert (run_copy / "gate" / "summary.md").is_file(), "the evidence stays"
    assert _json_from(result.stdout)["passed"] is False


def test_export_on_fail_quarantines_the_model_clearly_marked_not_for_release(run_copy, tmp_path):
    arguments = ["compress", "--config", str(run_copy / "recipe.toml"), "--out", str(run_copy), "--resume", "--strict", "--max-advantage", "0"]
    result = runner.invoke(app, [*arguments, "--export-on-fail", "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1, result.output
    quarantine = run_copy / "export" / "quarantine"
    assert (quarantine / "model.onnx").is_file() and "NOT FOR RELEASE" in (quarantine / "NOT-FOR-RELEASE.txt").read_text()
    assert not (run_copy / "export" / "model.onnx").exists()
    stored = onnx.load(quarantine / "model.onnx")
    assert {p.key: p.value for p in stored.metadata_props}["x.privacy_gate"].startswith("FAILED, not for release")
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert manifest["stage"] == "quarantined" and "quarantine" in manifest and "export" not in manifest
    assert "QUARANTINED" in result.stderr

    passing = [*arguments[:-3], "--no-strict", "--max-advantage", "1", "--cache-dir", str(tmp_path / "cache")]
    assert runner.invoke(app, passing).exit_code == 0
    assert (run_copy / "export" / "model.onnx").is_file() and not quarantine.exists()
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert manifest["stage"] == "released" and "quarantine" not in manifest


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--target-sparsity", "1.5"], "prune.target_sparsity"),
        (["--data", "telepathy"], "telepathy"),
        (["--shadows", "0"], "gate.shadows"),
        (["--resume", "--overwrite"], "--resume and --overwrite"),
        (["--config", "missing.toml"], "missing.toml"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, arguments, message):
    out = tmp_path / "out"
    result = runner.invoke(app, ["compress", "--out", str(out), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_resuming_a_finished_run_with_a_different_recipe_is_refused(run_copy):
    result = runner.invoke(app, ["compress", "--config", str(run_copy / "recipe.toml"), "--out", str(run_copy), "--resume", "--rounds", "3"])
    assert result.exit_code == 2, result.output
    assert "different recipe" in result.output
    assert (run_copy / "export" / "model.onnx").is_file(), "nothing was touched"


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, monkeypatch):
    import prunectl.stages.release

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(prunectl.stages.release, "prune_or_reuse", interrupted)
    result = runner.invoke(app, ["compress", "--out", str(tmp_path / "run"), "--overwrite"])
    assert result.exit_code == 130
    assert "--resume in place of --overwrite" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("advantage", "borderline"), [(0.09, True), (0.12, True), (0.01, False), (0.25, False)])
def test_the_summary_flags_a_verdict_closer_to_the_threshold_than_the_resolution(advantage, borderline):
    from prunectl.commands.compress import _gate_line
    from prunectl.stages.release import GateHeadline

    gate = GateHeadline(
        verdict="pass" if advantage <= 0.1 else "fail",
        passed=advantage <= 0.1,
        reason="",
        max_advantage=0.1,
        strict=False,
        deciding_attack="samia",
        advantage=advantage,
        advantage_interval=(advantage - 0.05, advantage + 0.05),
        original_advantage=None,
        resolution=0.07,
        report_dir="gate",
    )
    assert ("borderline" in _gate_line(gate)) is borderline


def test_every_default_the_help_states_is_the_recipes_default():
    """Flags are unset (None) so the recipe decides; their help names the default, which must not drift."""
    import re
    import typing

    from prunectl.commands import _options
    from prunectl.config import recipe_fields
    from prunectl.recipe import Recipe

    fields = recipe_fields()
    layer_words = {"dense": True, "pruned": False, "true": True, "false": False}
    stated = 0
    for parameter, dotted in _options.RECIPE_FLAGS.items():
        alias = "".join(part.title() for part in parameter.split("_"))
        if not hasattr(_options, alias):  # the export command's own flags
            continue
        option = typing.get_args(getattr(_options, alias))[1]
        match = re.search(r"\(default: ([^)]+)\)", option.help or "")
        if match is None:
            continue
        stated += 1
        default = fields[dotted].get(Recipe())
        if isinstance(default, tuple):
            default = ",".join(default)
        said = layer_words[match.group(1)] if isinstance(default, bool) else match.group(1)
        assert said == (default if isinstance(default, bool) else str(default)), (dotted, match.group(1), default)
    assert stated >= 9
