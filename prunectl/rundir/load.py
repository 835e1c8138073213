"""Loading a run back: the recipe it was started with, and a finished run's data and models.

Every stage after `prune` (the gate, export, verify, compress's later steps) reads a run
through :func:`load_run`, so the checkpoints are loaded one way only: into a freshly built
model of the stored recipe, tensors only (`weights_only=True`), and hashed from the very bytes
that are loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from prunectl.config import resolve
from prunectl.data import Dataset, Splits, load_dataset
from prunectl.errors import PrunectlError, RunDirError
from prunectl.models import fresh_model, load_state_dict_bytes, load_weights
from prunectl.recipe import Recipe
from prunectl.rundir.directory import RunDirectory
from prunectl.rundir.layout import BASE_CHECKPOINT, PRUNED_CHECKPOINT, RECIPE, SPLITS


@dataclass(frozen=True, eq=False)
class LoadedRun:
    """A finished run's recipe, data, splits and models, ready for the gate or an exporter."""

    path: Path
    recipe: Recipe
    data: Dataset
    splits: Splits
    base_model: nn.Module
    pruned_model: nn.Module
    checkpoints_sha256: dict[str, str] = field(default_factory=dict)
    """SHA-256 of the exact bytes the two models were loaded from, by file name."""


def stored_recipe(run_dir: str | Path) -> Recipe:
    """The resolved recipe a run was started with."""
    run = RunDirectory.open_existing(Path(run_dir))
    try:
        return resolve(config=run.file(RECIPE), env={}).recipe
    except PrunectlError as error:
        raise RunDirError(f"{run.file(RECIPE)} is damaged ({error}); prune the run again with --overwrite") from None


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load a finished run: its recipe, data, splits, base and pruned models (eval mode, CPU)."""
    run = RunDirectory.open_finished(Path(run_dir))
    recipe = stored_recipe(run.path)
    data = load_dataset(recipe.data)
    splits = Splits.from_dict(json.loads(run.file(SPLITS).read_text()))
    models, hashes = [], {}
    for name in (BASE_CHECKPOINT, PRUNED_CHECKPOINT):
        try:
            raw = run.file(name).read_bytes()
        except OSError as error:
            raise RunDirError(f"cannot read {run.file(name)} ({error.strerror or error}); the run is incomplete: prune it again") from None
        hashes[name] = hashlib.sha256(raw).hexdigest()
        model = fresh_model(recipe, data, recipe.seed)
        load_weights(model, load_state_dict_bytes(raw, run.file(name)), str(run.file(name)))
        models.append(model.eval())
    return LoadedRun(run.path, recipe, data, splits, models[0], models[1], hashes)
