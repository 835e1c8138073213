"""Determinism: the same recipe and seed on the CPU give the same metrics and the same bytes.

A release pipeline must be able to rebuild an artifact and get the file it audited: the two
runs below share nothing (separate run directories, separate cold caches), only the recipe.
Timings and paths are the only things allowed to differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import make_release_recipe
from prunectl.api import compress

pytestmark = pytest.mark.slow

IDENTICAL_FILES = (
    "base.pt",
    "pruned.pt",
    "masks.pt",
    "splits.json",
    "recipe.toml",
    "export/model.onnx",
    "export/model.onnx.xz",
    "export/baseline/model.onnx",
    "gate/roc.png",
)
VARYING_KEYS = {"seconds", "timeline", "run_dir", "report_dir", "path", "xz_path", "bench_path", "dir", "latency"}


def _without_timings_and_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings_and_paths(v) for k, v in value.items() if k not in VARYING_KEYS}
    if isinstance(value, list):
        return [_without_timings_and_paths(v) for v in value]
    return value


@pytest.fixture(scope="module")
def rerun(released_run, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rerun")
    result = compress(make_release_recipe(), out=root / "release", cache_dir=root / "cache", bench_runs=20)
    return result, root / "release"


@pytest.mark.parametrize("name", IDENTICAL_FILES)
def test_the_same_recipe_and_seed_write_byte_identical_files(released_run, rerun, name):
    first, second = released_run[1] / name, rerun[1] / name
    assert first.read_bytes() == second.read_bytes(), f"{name} differs between two runs of one recipe"


def test_the_same_recipe_and_seed_report_identical_metrics(released_run, rerun):
    first, second = released_run[0].to_dict(), rerun[0].to_dict()
    assert _without_timings_and_paths(first) == _without_timings_and_paths(second)
    assert first["artifact"]["sha256"] == second["artifact"]["sha256"]


def test_the_gate_report_is_identical_but_for_timings_and_paths(released_run, rerun):
    reports = [json.loads((run / "gate" / "report.json").read_text()) for _, run in (released_run, rerun)]
    assert _without_timings_and_paths(reports[0]) == _without_timings_and_paths(reports[1])


def test_the_manifest_records_the_same_hashes_and_figures(released_run, rerun):
    manifests = [json.loads((run / "manifest.json").read_text()) for _, run in (released_run, rerun)]
    for section in ("splits", "metrics", "recipe_sha256"):
        assert manifests[0][section] == manifests[1][section], section
    # prune.json, gate/report.json and gate/junit.xml hold timings (and the first two the run
    # directory), so their hashes may differ; no other file's may.
    files = [{k: v for k, v in m["files"].items() if k != "prune.json"} for m in manifests]
    assert files[0] == files[1] and len(files[0]) == len(manifests[0]["files"]) - 1
    gates = [{k: v for k, v in m["gate"].items() if k != "reports_sha256"} for m in manifests]
    assert gates[0] == gates[1]
    reports = [{k: v for k, v in m["gate"]["reports_sha256"].items() if k not in ("report.json", "junit.xml")} for m in manifests]
    assert reports[0] == reports[1] and set(reports[0]) == {"summary.md", "roc.png"}
    assert manifests[0]["export"]["files"] == manifests[1]["export"]["files"]


def _directory_names(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*")}


def test_both_runs_wrote_the_same_set_of_files(released_run, rerun):
    assert _directory_names(released_run[1]) == _directory_names(rerun[1])
