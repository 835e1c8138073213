"""The core's side of the privacy gate: recipe → gate policy, run → gate inputs, reports → run.

`gates` knows nothing of recipes or run directories; this module hands it the victim's data,
models and pipeline function (with the recipe bound, so every shadow runs the victim's code
path) and writes what it returns into `runs/<name>/gate/`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gates.errors import GateInputError
from gates.gate import GateInputs, GatePolicy, check_feasible, run_gate
from gates.report import render_all
from gates.result import GateResult
from prunectl.config import recipe_sha256
from prunectl.defenses import defense_label
from prunectl.errors import PrunectlError
from prunectl.pipeline import pipeline_function
from prunectl.progress import Progress, SilentProgress
from prunectl.recipe import GateSpec, Recipe
from prunectl.run import atomic_write_bytes, replace_directory
from prunectl.training import resolve_device

GATE_DIR = "gate"
REPORT_FILES = ("report.json", "junit.xml", "summary.md", "roc.png")
MIN_EVAL_PER_SIDE = 100


class GateDataError(PrunectlError):
    """The run's data cannot support a meaningful gate (exit 2)."""


@dataclass(frozen=True, eq=False)
class GateOutcome:
    """What `prunectl gate` reports: the verdict with its evidence, and where the reports are."""

    run_dir: str
    gate_dir: str
    result: GateResult
    checkpoints_sha256: dict[str, str] = field(default_factory=dict)
    """SHA-256 of the checkpoint bytes the gate audited, by file name (`base.pt`, `pruned.pt`)."""

    @property
    def passed(self) -> bool:
        return self.result.passed

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "gate_dir": self.gate_dir, "checkpoints_sha256": self.checkpoints_sha256, **self.result.to_dict()}


def gate_policy(recipe: Recipe, settings: GateSpec | None = None) -> GatePolicy:
    spec = settings or recipe.gate
    return GatePolicy(
        attacks=tuple(spec.attacks),
        max_advantage=spec.max_advantage,
        strict=spec.strict,
        shadows=spec.shadows,
        eval_size=spec.eval_size,
        min_eval_size=MIN_EVAL_PER_SIDE,
        max_shadow_accuracy_drop=spec.max_shadow_accuracy_drop,
        sensitivity_samples=spec.sensitivity_samples,
        sensitivity_eps=spec.sensitivity_eps,
        bootstrap=spec.bootstrap,
        audit_original=spec.audit_original,
        attack_train_size=spec.attack_train_size,
        seed=recipe.seed,
        device=str(resolve_device(recipe.device)),
    )


def gate_inputs(loaded: Any, cache_dir: Path | None = None) -> GateInputs:
    """A loaded run (`prunectl.api.LoadedRun`) as the gate sees it; shadows share `cache_dir`."""
    recipe: Recipe = loaded.recipe
    splits = loaded.splits
    pipeline = pipeline_function(cache_dir=cache_dir)

    def train_shadow(members: np.ndarray, dev: np.ndarray, seed: int) -> tuple[Any, Any]:
        return pipeline(recipe, members, dev, seed)

    return GateInputs(
        inputs=loaded.data.x,
        labels=loaded.data.y.numpy(),
        num_classes=loaded.data.num_classes,
        members=splits.members,
        holdout=splits.holdout,
        shadow_pool=splits.shadow_pool,
        dev_fraction=len(splits.dev) / (len(splits.members) + len(splits.dev)),
        pruned_model=loaded.pruned_model,
        original_model=loaded.base_model,
        train_shadow=train_shadow,
        extra_settings={
            "recipe_sha256": recipe_sha256(recipe),
            "run": recipe.run_name,
            "victim_training": f"the victim's recipe with {defense_label(recipe.defense)}",
        },
    )


def check_gate_feasible(recipe: Recipe, data: Any, splits: Any, settings: GateSpec | None = None) -> None:
    """Refuse data too small for a meaningful gate before anything trains (`compress` calls it
    before pruning, so the refusal costs nothing and leaves no run behind)."""
    try:
        check_feasible(
            labels=data.y.numpy(),
            num_classes=data.num_classes,
            members=splits.members,
            holdout=splits.holdout,
            shadow_pool=splits.shadow_pool,
            policy=gate_policy(recipe, settings),
        )
    except GateInputError as error:
        raise GateDataError(str(error)) from None


def audit(loaded: Any, settings: GateSpec | None = None, progress: Progress | None = None, cache_dir: Path | None = None) -> GateResult:
    """Run the gate on a loaded run; bad input becomes a `PrunectlError` (exit 2)."""
    try:
        return run_gate(gate_inputs(loaded, cache_dir), gate_policy(loaded.recipe, settings), progress or SilentProgress())
    except GateInputError as error:
        raise GateDataError(str(error)) from None


def write_reports(result: GateResult, gate_dir: Path, context: dict[str, Any]) -> dict[str, Path]:
    """All four reports into `gate_dir`, replacing the previous set only once all are written."""
    staging = gate_dir.with_name(f".{gate_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, payload in render_all(result, context).items():
        atomic_write_bytes(staging / name, payload)
    replace_directory(staging, gate_dir)
    return {name: gate_dir / name for name in REPORT_FILES}
