"""`prunectl bench` through the CLI: outputs, default bench.json location, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from exporters import ExportMetadata, export_model
from prunectl.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    out = tmp_path_factory.mktemp("run") / "export"
    export_model(
        model, torch.randn(1, 1, 4, 4), out, metadata=ExportMetadata(), parity_inputs=torch.randn(4, 1, 4, 4), keep_dense=True
    )
    return out


def test_bench_writes_bench_json_beside_the_model_and_prints_json(export_dir: Path) -> None:
    (export_dir / "bench.json").unlink(missing_ok=True)
    result = runner.invoke(
        app, ["bench", str(export_dir / "model.onnx"), "--runs", "5", "--warmup", "1", "--no-memory", "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["runs"] == 5 and printed["threads"] == 1 and printed["batch"] == 1
    assert printed["candidate"]["memory"] is None
    written = json.loads((export_dir / "bench.json").read_text())
    assert written.keys() == printed.keys()


def test_bench_against_with_out(export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "b.json"
    result = runner.invoke(
        app,
        ["bench", str(export_dir / "model.onnx"), "--against", str(export_dir / "model.dense.onnx"),
         "--runs", "4", "--warmup", "0", "--batch", "2", "--threads", "1", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # without --json, results go to the file and the table to stderr
    data = json.loads(out.read_text())
    assert data["baseline"]["path"] == str(export_dir / "model.dense.onnx")
    assert data["ratios"]["file_bytes"] > 0
    assert data["candidate"]["memory"]["peak_rss_bytes"] > 0
    assert "p50 latency" in result.stderr


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_file_exits_2(tmp_path: Path) -> None:
    line = _one_line_error(runner.invoke(app, ["bench", str(tmp_path / "nope.onnx")]))
    assert "no such file" in line


def test_non_onnx_file_exits_2(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_text("not a model")
    line = _one_line_error(runner.invoke(app, ["bench", str(bogus)]))
    assert "is not an ONNX model" in line


def test_mismatched_input_shape_exits_2(export_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    other = nn.Sequential(nn.Flatten(), nn.Linear(25, 4))
    export_model(other, torch.randn(1, 1, 5, 5), tmp_path, metadata=ExportMetadata(), parity_inputs=torch.randn(2, 1, 5, 5))
    line = _one_line_error(
        runner.invoke(app, ["bench", str(export_dir / "model.onnx"), "--against", str(tmp_path / "model.onnx"), "--no-memory"])
    )
    assert "input shape mismatch" in line


def test_help_in_a_subprocess() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prunectl.cli", "bench", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "--against" in done.stdout and "--threads" in done.stdout
