"""Every file and directory name of a run directory, once.

    runs/<name>/
      recipe.toml  splits.json  base.pt  pruned.pt  masks.pt  defense.json  prune.json
      plan.json                                   channel pruning: the channels removed, as data
      checkpoints/round-K.pt                      per-round state for --resume
      gate/report.json junit.xml summary.md roc.png
      export/model.onnx  model.onnx.xz  export.json  bench.json  baseline/model.onnx
      export/model.int8.onnx  model.int8.onnx.xz   export.quantize = "int8": the release artifact
      export/quarantine/...  NOT-FOR-RELEASE.txt   a failed model, with --export-on-fail
      manifest.json                               written last: the run is finished

The exported files are named by `exporters` and the gate's reports by `gates`; this module
takes those names from there instead of spelling them again.
"""

from __future__ import annotations

import re

from exporters.options import INT8_NAME, ONNX_NAME, XZ_NAME
from gates.report import FILENAMES as GATE_REPORTS

RECIPE = "recipe.toml"
SPLITS = "splits.json"
BASE_CHECKPOINT = "base.pt"
PRUNED_CHECKPOINT = "pruned.pt"
MASKS = "masks.pt"
PLAN = "plan.json"
DEFENSE = "defense.json"
PRUNE_RESULT = "prune.json"
MANIFEST = "manifest.json"

CHECKPOINTS_DIR = "checkpoints"
ROUND_CHECKPOINT = "round-{round}.pt"
ROUND_CHECKPOINT_PATTERN = re.compile(r"round-(\d+)\.pt$")

GATE_DIR = "gate"

EXPORT_DIR = "export"
BASELINE_DIR = "baseline"
INT8_XZ_NAME = INT8_NAME + ".xz"
EXPORT_RECORD = "export.json"
BENCH = "bench.json"
QUARANTINE_DIR = "quarantine"
QUARANTINE_NOTE = "NOT-FOR-RELEASE.txt"
EXPORTED_SUFFIXES = (".onnx", ".xz")

PRUNE_FILES = (RECIPE, SPLITS, BASE_CHECKPOINT, PRUNED_CHECKPOINT, MASKS, PLAN, DEFENSE, PRUNE_RESULT)
"""What a finished prune writes; the manifest records each one's SHA-256."""

RUN_MARKERS = (MANIFEST, RECIPE, SPLITS)
"""Any of these makes a directory recognisably a run (so --overwrite may replace it)."""

__all__ = [
    "BASE_CHECKPOINT",
    "BASELINE_DIR",
    "BENCH",
    "CHECKPOINTS_DIR",
    "DEFENSE",
    "EXPORT_DIR",
    "EXPORT_RECORD",
    "EXPORTED_SUFFIXES",
    "GATE_DIR",
    "GATE_REPORTS",
    "INT8_NAME",
    "INT8_XZ_NAME",
    "MANIFEST",
    "MASKS",
    "ONNX_NAME",
    "PLAN",
    "PRUNE_FILES",
    "PRUNE_RESULT",
    "PRUNED_CHECKPOINT",
    "QUARANTINE_DIR",
    "QUARANTINE_NOTE",
    "RECIPE",
    "ROUND_CHECKPOINT",
    "ROUND_CHECKPOINT_PATTERN",
    "RUN_MARKERS",
    "SPLITS",
    "XZ_NAME",
]
