"""Gate integrity: the gate cannot be fooled into passing. Anything that goes wrong is "not passed".

Each case sabotages one part of the audit and runs the real CLI with `--max-advantage 1`, a
threshold no honest measurement can exceed: a pass would mean the failure was swallowed. The
verdict must be "not passed" with exit code 1 (DESIGN.md), never 0, and the manifest must not
hold a pass for these checkpoints afterwards.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import NaNOutputs
from prunectl.cli import app

runner = CliRunner()
ANY_LEAKAGE_PASSES = ["--shadows", "2", "--attacks", "confidence,loss", "--max-advantage", "1"]


def _shadow_training_crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    import prunectl.stages.shadow_work

    def run_pipeline(recipe, members, dev, seed, **kwargs):
        raise FloatingPointError("training loss became nan; lower the learning rate")

    monkeypatch.setattr(prunectl.stages.shadow_work, "run_pipeline", run_pipeline)


def _a_shadow_diverges_to_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import prunectl.stages.shadow_work

    real = prunectl.stages.shadow_work.run_pipeline

    def run_pipeline(recipe, members, dev, seed, **kwargs):
        output = real(recipe, members, dev, seed, **kwargs)
        return dataclasses.replace(output, pruned_model=NaNOutputs(output.pruned_model))

    monkeypatch.setattr(prunectl.stages.shadow_work, "run_pipeline", run_pipeline)


def _the_victim_emits_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import prunectl.stages.gate

    real = prunectl.stages.gate.load_run

    def load_run(run_dir):
        loaded = real(run_dir)
        return dataclasses.replace(loaded, pruned_model=NaNOutputs(loaded.pruned_model))

    monkeypatch.setattr(prunectl.stages.gate, "load_run", load_run)


def _patch_attack(monkeypatch: pytest.MonkeyPatch, name: str, **methods: Callable[..., object]) -> None:
    """Every attack named `name` that the gate's attack units make gets `methods` in place of its own."""
    import gates.work

    real = gates.work.make_attack

    def make_attack(attack_name, options=None, **context):
        attack = real(attack_name, options, **context)
        if attack_name == name:
            for method, replacement in methods.items():
                setattr(attack, method, replacement)
        return attack

    monkeypatch.setattr(gates.work, "make_attack", make_attack)


def _an_attack_crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    def fit(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    _patch_attack(monkeypatch, "loss", fit=fit)


def _an_attack_scores_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_attack(monkeypatch, "confidence", score=lambda features: np.full(len(features), np.nan))


SABOTAGE: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "a shadow model fails to train": (_shadow_training_crashes, "training loss became nan"),
    "a shadow model diverges to NaN": (_a_shadow_diverges_to_nan, "not passed"),
    "the audited model emits NaN": (_the_victim_emits_nan, "not passed"),
    "an attack crashes": (_an_attack_crashes, "illegal memory access"),
    "an attack scores NaN": (_an_attack_scores_nan, "NaN"),
}


@pytest.fixture()
def run_copy(released_run, tmp_path: Path) -> Path:
    target = tmp_path / "release"
    shutil.copytree(released_run[1], target)
    return target


@pytest.mark.parametrize("case", list(SABOTAGE))
def test_a_broken_audit_is_not_passed_exit_1_and_leaves_no_pass_on_record(run_copy, monkeypatch, case):
    sabotage, reason = SABOTAGE[case]
    sabotage(monkeypatch)
    result = runner.invoke(app, ["gate", str(run_copy), *ANY_LEAKAGE_PASSES, "--json"])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["passed"] is False and payload["verdict"] == "error"
    assert reason in payload["reason"]
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert manifest["gate"]["passed"] is False, "the earlier pass was superseded, not kept"
    assert runner.invoke(app, ["verify", str(run_copy), "--no-parity"]).exit_code == 1


def test_a_gate_that_is_killed_leaves_no_earlier_pass_on_record(run_copy, monkeypatch):
    import prunectl.stages.gate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prunectl.stages.gate, "run_gate", interrupted)
    result = runner.invoke(app, ["gate", str(run_copy), *ANY_LEAKAGE_PASSES])
    assert result.exit_code == 130
    assert "gate" not in json.loads((run_copy / "manifest.json").read_text())
    assert runner.invoke(app, ["verify", str(run_copy), "--no-parity"]).exit_code == 1


def test_compress_with_a_broken_audit_exits_1_and_removes_the_release_artifact(run_copy, monkeypatch, tmp_path):
    _an_attack_scores_nan(monkeypatch)
    arguments = ["compress", "--config", str(run_copy / "recipe.toml"), "--out", str(run_copy), "--resume"]
    result = runner.invoke(app, [*arguments, *ANY_LEAKAGE_PASSES, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1, result.output
    assert not (run_copy / "export").exists()
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert manifest["stage"] == "gate-failed" and manifest["release"]["released"] is False


@pytest.mark.parametrize("bad", [["--eval-size", "40"], ["--shadows", "0"]], ids=["eval set too small", "no shadows"])
def test_bad_gate_settings_on_a_released_run_lose_nothing(run_copy, bad):
    """Withdrawing the last verdict is for an audit that starts, not for one refused as bad input."""
    before = (run_copy / "manifest.json").read_bytes()
    result = runner.invoke(app, ["gate", str(run_copy), *bad])
    assert result.exit_code == 2, result.output
    assert (run_copy / "manifest.json").read_bytes() == before
    assert runner.invoke(app, ["verify", str(run_copy), "--no-parity"]).exit_code == 0
