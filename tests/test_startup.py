"""The CLI answers instantly: help, `prunectl init -` and a refused value never import torch or numpy.

Each runs in a fresh interpreter, as a user's shell would start it; what was imported is read at
exit. Their wall time against `python -c pass` is measured in benchmarks/startup.py (BENCHMARKS.md,
"CLI start-up"), never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "numpy", "onnx", "onnxruntime", "matplotlib", "scipy", "sklearn")

_RUN_AND_REPORT = """
import atexit, json, os, sys
def report():
    loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(os.environ["HEAVY"])))
    with open(os.environ["REPORT"], "w") as handle:
        json.dump(loaded, handle)
atexit.register(report)
sys.argv = ["prunectl", *sys.argv[1:]]
from prunectl.cli import main
main()
"""


def run_cli(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    report = tmp_path / "imported.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNECTL_")}
    env.update(HEAVY=json.dumps(HEAVY), REPORT=str(report))
    done = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    return done, json.loads(report.read_text())


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["--help"], 0, "compress"),
        (["compress", "--help"], 0, "--target-sparsity"),
        (["init", "-"], 0, "[prune]"),
        (["compress", "--target-sparsity", "1.5"], 2, "prune.target_sparsity = 1.5 is invalid"),
        (["prune", "--defense", "kl", "--kl-weight", "-1"], 2, "defense.kl_weight = -1.0 is invalid"),
        (["gate", "--max-advantage", "2"], 2, "gate.max_advantage = 2.0 is invalid"),
    ],
    ids=["help", "a command's help", "init to stdout", "a refused flag", "a refused defense setting", "a refused gate setting"],
)
def test_the_cli_answers_without_importing_torch_or_numpy(tmp_path, argv, code, says):
    done, imported = run_cli(tmp_path, *argv)
    assert done.returncode == code, done.stderr
    assert says in done.stdout + done.stderr
    assert imported == [], f"prunectl {' '.join(argv)} imported {imported}"


def test_the_report_sees_heavy_imports_when_there_are_some(tmp_path):
    """The check above can fail: a command that does load torch is caught."""
    done, imported = run_cli(tmp_path, "bench", str(tmp_path / "missing.onnx"))
    assert done.returncode == 2, done.stderr
    assert "onnxruntime" in imported or "onnx" in imported or "numpy" in imported


def test_a_gate_worker_imports_the_pipeline_but_not_the_gates_statistics_reports_or_export():
    """A spawned worker imports the module of every object it unpickles: the gate's entry point
    (`gates.work`), prunectl's shadow units and the pool's worker side. Those need torch, and
    none of what only the parent uses (scipy's statistics, onnx, plots): each such import is
    paid again by every worker of every gate (benchmarks/gate_speed.py)."""
    modules = ("gates.work", "prunectl.stages.shadow_work", "prunectl.executors.local")
    program = f"import json, sys; import {', '.join(modules)}; print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    imported = set(json.loads(done.stdout)) & set(HEAVY)
    assert imported == {"torch", "numpy"}, imported


def test_the_manifest_records_onnx_versions_without_importing_onnx():
    """`prune` and `gate` never export, yet their manifests name onnx's and onnxruntime's versions:
    read from the installed metadata, they cost no import (about a second), and they are the
    strings the modules themselves report."""
    program = (
        "import json, sys; from prunectl.rundir.manifest import library_versions; versions = library_versions(); "
        "imported = sorted(n for n in ('onnx', 'onnxruntime') if n in sys.modules); "
        "import onnx, onnxruntime; print(json.dumps([versions, imported, onnx.__version__, onnxruntime.__version__]))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    versions, imported, onnx_version, onnxruntime_version = json.loads(done.stdout)
    assert imported == []
    assert (versions["onnx"], versions["onnxruntime"]) == (onnx_version, onnxruntime_version)
