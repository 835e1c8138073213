"""The CLI's contract: exit codes of DESIGN.md, one-line errors, results on stdout with --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_tiny_recipe
from prunectl.cli import app
from prunectl.config import to_toml

runner = CliRunner()


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(to_toml(make_tiny_recipe()))
    return path


def _assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert fragment in lines[0]


def test_help_runs_in_a_subprocess_and_lists_prune():
    completed = subprocess.run([sys.executable, "-m", "prunectl.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    assert "prune" in completed.stdout


def test_prune_succeeds_and_prints_the_result_as_json(tmp_path, tiny_config):
    result = runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["sparsity"]["global_sparsity"] == pytest.approx(0.8, abs=0.005)
    assert payload["origins"]["prune.target_sparsity"] == "file"


def test_flags_override_the_config_file(tmp_path, tiny_config):
    out = tmp_path / "r"
    result = runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(out), "--target-sparsity", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["recipe"]["prune"]["target_sparsity"] == 0.5
    assert payload["origins"]["prune.target_sparsity"] == "flag"
    assert "target_sparsity = 0.5" in (out / "recipe.toml").read_text()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--target-sparsity", "1.5"], "prune.target_sparsity = 1.5 is invalid"),
        (["--target-sparsity", "nan"], "prune.target_sparsity = nan is invalid"),
        (["--rounds", "0"], "prune.rounds = 0 is invalid"),
        (["--data", "cifar"], "unknown data source 'cifar'"),
        (["--model", "builtin:vit"], "unknown builtin model 'vit'"),
        (["--data", "npz:/no/such.npz"], "does not exist"),
        (["--config", "/no/such.toml"], "does not exist"),
        (["--model", "builtin:cnn", "--data", "csv:{csv}"], "use builtin:mlp"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_message(tmp_path, args, fragment):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(60)))
    out = tmp_path / "r"
    args = [a.replace("{csv}", str(csv)) for a in args]
    result = runner.invoke(app, ["prune", "--out", str(out), *args])
    _assert_one_line_error(result, fragment)
    assert not (out / "manifest.json").exists()


def test_unknown_flags_are_usage_errors_with_exit_2():
    result = runner.invoke(app, ["prune", "--sparsity", "0.9"])
    assert result.exit_code == 2


def test_a_finished_run_is_refused_without_overwrite(tiny_run, tiny_config):
    _, out = tiny_run
    result = runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(out)])
    _assert_one_line_error(result, "--overwrite")


def test_overwrite_replaces_a_finished_run(tmp_path, tiny_config):
    out = tmp_path / "r"
    assert runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(out)]).exit_code == 0
    (out / "stale-file").write_text("from the old run")
    result = runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (out / "stale-file").exists()


def test_internal_errors_exit_3_and_point_to_a_log(monkeypatch, tmp_path, tiny_config):
    import prunectl.api

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(prunectl.api, "prune", broken)
    result = runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 3
    assert "internal error" in result.output and "boom" in result.output
    logs = list((Path(os.environ["XDG_CACHE_HOME"]) / "prunectl" / "logs").glob("crash-*.log"))
    assert logs and "RuntimeError: boom" in logs[0].read_text()


def test_ctrl_c_exits_130_and_says_how_to_resume(monkeypatch, tmp_path, tiny_config):
    import prunectl.api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prunectl.api, "prune", interrupted)
    out = tmp_path / "r"
    result = runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(out)])
    assert result.exit_code == 130
    assert f"prunectl prune --resume {out}" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_asking_for_cuda_without_a_gpu_is_bad_input(tmp_path, tiny_config):
    result = runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(tmp_path / "r"), "--device", "cuda"])
    _assert_one_line_error(result, "no CUDA GPU is available; use --device cpu")
    assert not (tmp_path / "r").exists()


def test_error_messages_with_brackets_are_printed_whole(monkeypatch, tmp_path, tiny_config):
    import prunectl.api
    from prunectl.errors import DataError

    def bad(*args, **kwargs):
        raise DataError("inputs of shape [batch, 1, 5, 5] do not fit; pass [batch, 1, 8, 8]")

    monkeypatch.setattr(prunectl.api, "prune", bad)
    result = runner.invoke(app, ["prune", "--config", str(tiny_config), "--out", str(tmp_path / "r")])
    _assert_one_line_error(result, "[batch, 1, 5, 5] do not fit; pass [batch, 1, 8, 8]")
