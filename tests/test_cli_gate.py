"""`prunectl gate`: exit codes per DESIGN.md, the four reports, the manifest's record."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from prunectl.cli import app

runner = CliRunner()
QUICK = ["--shadows", "2", "--attacks", "confidence,loss"]


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    """A private copy of the tiny run: the gate writes into the run directory."""
    target = tmp_path / "run"
    shutil.copytree(tiny_run[1], target)
    return target


def test_a_run_under_the_threshold_passes_with_exit_0_and_writes_every_report(run_copy):
    result = runner.invoke(app, ["gate", str(run_copy), *QUICK, "--max-advantage", "1", "--json"])
    assert result.exit_code == 0, result.output
    for name in ("report.json", "junit.xml", "summary.md", "roc.png"):
        assert (run_copy / "gate" / name).is_file(), name
    report = json.loads((run_copy / "gate" / "report.json").read_text())
    assert report["verdict"] == "pass" and report["gated_attacks"] == ["confidence", "loss"]
    assert "PASSED" in (run_copy / "gate" / "summary.md").read_text()
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert manifest["gate"]["verdict"] == "pass"
    assert set(manifest["gate"]["checkpoints_sha256"]) == {"base.pt", "pruned.pt"}
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert printed["verdict"] == "pass" and printed["gate_dir"] == str(run_copy / "gate")


def test_strict_mode_with_zero_tolerance_fails_with_exit_1_and_a_failing_junit_case(run_copy):
    result = runner.invoke(app, ["gate", str(run_copy), *QUICK, "--strict", "--max-advantage", "0"])
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    suite = ET.parse(run_copy / "gate" / "junit.xml").getroot()
    if suite.tag == "testsuites":
        suite = suite[0]
    assert int(suite.get("failures")) >= 1
    assert json.loads((run_copy / "manifest.json").read_text())["gate"]["passed"] is False


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--max-advantage", "1.5"], "gate.max_advantage"),
        (["--attacks", "confidence,telepathy"], "gate.attacks"),
        (["--shadows", "0"], "gate.shadows"),
        (["--eval-size", "40"], "at least 100 per side"),
    ],
)
def test_bad_gate_settings_exit_2_with_one_line_and_write_nothing(run_copy, arguments, message):
    result = runner.invoke(app, ["gate", str(run_copy), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (run_copy / "gate").exists()


def test_a_directory_that_is_not_a_run_exits_2(tmp_path):
    result = runner.invoke(app, ["gate", str(tmp_path)])
    assert result.exit_code == 2, result.output


def test_gate_from_a_recipe_prunes_first_and_reuses_the_run_next_time(tmp_path):
    config = tmp_path / "prunectl.toml"
    config.write_text(
        'name = "gated"\n'
        "[data]\nsource = \"digits\"\nmembers = 200\ndev = 60\nholdout = 200\nshadow_pool = 400\n"
        "[model]\nsource = \"builtin:mlp\"\nwidths = [32]\n"
        "[train]\nepochs = 15\nbatch_size = 32\nlr = 0.003\n"
        "[prune]\ntarget_sparsity = 0.8\nrounds = 2\nepochs_per_round = 1\n"
        "[gate]\nshadows = 2\nattacks = [\"confidence\"]\nmax_advantage = 1.0\n"
    )
    out = tmp_path / "runs" / "gated"
    first = runner.invoke(app, ["gate", "--config", str(config), "--out", str(out)])
    assert first.exit_code == 0, first.output
    pruned_at = (out / "pruned.pt").stat().st_mtime_ns
    second = runner.invoke(app, ["gate", "--config", str(config), "--out", str(out), "--strict", "--max-advantage", "0"])
    assert second.exit_code == 1, second.output
    assert (out / "pruned.pt").stat().st_mtime_ns == pruned_at


def test_an_error_inside_the_gate_exits_1_not_0_and_the_report_says_why(run_copy, monkeypatch):
    import prunectl.stages.shadow_work

    def failing_pipeline(recipe, members, dev, seed, **kwargs):
        raise RuntimeError("out of memory while training shadow")

    monkeypatch.setattr(prunectl.stages.shadow_work, "run_pipeline", failing_pipeline)
    result = runner.invoke(app, ["gate", str(run_copy), *QUICK, "--max-advantage", "1"])
    assert result.exit_code == 1, result.output
    assert "NOT PASSED" in result.output and "out of memory while training shadow" in result.output
    report = json.loads((run_copy / "gate" / "report.json").read_text())
    assert report["verdict"] == "error" and report["passed"] is False
    suite = ET.parse(run_copy / "gate" / "junit.xml").getroot()
    assert int(suite.get("errors")) + int(suite.get("failures")) >= 1
