"""The public Python API: every CLI command is a thin wrapper over a function here.

    from prunectl.api import compress, gate, prune, resolve_recipe
    recipe = resolve_recipe(flags={"prune.target_sparsity": 0.9}).recipe
    result = prune(recipe, out="runs/demo")
    print(result.pruned_accuracy, result.sparsity["global_sparsity"])
    audit = gate("runs/demo")      # shadows, attacks, verdict; reports in runs/demo/gate/
    print(audit.passed, audit.result.reason)
    release = compress(recipe, out="runs/release")   # prune, gate, export only if it passed

Results are frozen dataclasses with `to_dict()` for JSON. This module only re-exports: the
work lives in `prunectl.stages` (one module per stage), and nothing inside prunectl imports
this facade except the CLI's commands.
"""

from __future__ import annotations

from prunectl.config import ResolvedRecipe
from prunectl.config import resolve as resolve_recipe
from prunectl.executors import Execution, check_execution
from prunectl.pipeline import PipelineFunction, pipeline_function
from prunectl.recipe import GateSpec, Recipe
from prunectl.rundir.load import LoadedRun, load_run, stored_recipe
from prunectl.stages.export import ExportResult, export
from prunectl.stages.gate import GateOutcome, gate
from prunectl.stages.memscore import MemscoreResult, memscore
from prunectl.stages.prune import PruneResult, prune, prune_or_reuse, reusable_run
from prunectl.stages.release import RunResult, compress
from prunectl.stages.verify import VerifyResult, verify

__all__ = [
    "check_execution",
    "compress",
    "Execution",
    "ExportResult",
    "export",
    "gate",
    "GateOutcome",
    "GateSpec",
    "load_run",
    "LoadedRun",
    "memscore",
    "MemscoreResult",
    "pipeline_function",
    "PipelineFunction",
    "prune",
    "prune_or_reuse",
    "PruneResult",
    "Recipe",
    "ResolvedRecipe",
    "resolve_recipe",
    "reusable_run",
    "RunResult",
    "stored_recipe",
    "verify",
    "VerifyResult",
]
