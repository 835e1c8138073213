"""Loading a run back: the recipe it was started with, and a finished run's data and models.

Every stage after `prune` (the gate, export, verify, compress's later steps) reads a run
through :func:`load_run`, so the checkpoints are loaded one way only: into a freshly built
model of the stored recipe, tensors only (`weights_only=True`), and hashed from the very bytes
that are loaded. A channel-pruned model is rebuilt the same way, with its plan (`plan.json`,
data, never pickled modules) replayed on the fresh model first (:func:`rebuild_pruned`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from prunectl.config import resolve
from prunectl.data import Dataset, Splits, load_dataset
from prunectl.errors import PrunectlError, RunDirError
from prunectl.models import fresh_model, load_state_dict_bytes, load_weights
from prunectl.pruning.channels import ChannelPlan, replay
from prunectl.recipe import Recipe
from prunectl.rundir.directory import RunDirectory
from prunectl.rundir.layout import BASE_CHECKPOINT, PLAN, PRUNED_CHECKPOINT, RECIPE, SPLITS


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
    """SHA-256 of the exact bytes the two models (and a channel plan) were loaded from, by file name."""


def stored_recipe(run_dir: str | Path) -> Recipe:
    """The resolved recipe a run was started with."""
    run = RunDirectory.open_existing(Path(run_dir))
    try:
        return resolve(config=run.file(RECIPE), env={}).recipe
    except PrunectlError as error:
        raise RunDirError(f"{run.file(RECIPE)} is damaged ({error}); prune the run again with --overwrite") from None


def rebuild_pruned(recipe: Recipe, data: Dataset, state: dict[str, torch.Tensor], plan: ChannelPlan | None, where: str) -> nn.Module:
    """The recipe's architecture, freshly built, its channel plan replayed (if any), `state` loaded:
    the one way a pruned model is rebuilt from data (a `PlanError` or `ModelError` if it does not fit)."""
    model = fresh_model(recipe, data, recipe.seed)
    if plan is not None:
        replay(model, plan, torch.zeros(1, *data.input_shape))
    load_weights(model, state, where)
    return model


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load a finished run: its recipe, data, splits, base and pruned models (eval mode, CPU)."""
    run = RunDirectory.open_finished(Path(run_dir))
    recipe = stored_recipe(run.path)
    data = load_dataset(recipe.data)
    splits = Splits.from_dict(json.loads(run.file(SPLITS).read_text()))
    raw = {name: _read(run, name) for name in (BASE_CHECKPOINT, PRUNED_CHECKPOINT)}
    hashes = {name: hashlib.sha256(payload).hexdigest() for name, payload in raw.items()}
    plan = None
    if recipe.prune.structure == "channel":
        plan_bytes = _read(run, PLAN)
        hashes[PLAN] = hashlib.sha256(plan_bytes).hexdigest()
        plan = ChannelPlan.from_json(plan_bytes, str(run.file(PLAN)))
    base = fresh_model(recipe, data, recipe.seed)
    load_weights(base, load_state_dict_bytes(raw[BASE_CHECKPOINT], run.file(BASE_CHECKPOINT)), str(run.file(BASE_CHECKPOINT)))
    state = load_state_dict_bytes(raw[PRUNED_CHECKPOINT], run.file(PRUNED_CHECKPOINT))
    pruned = rebuild_pruned(recipe, data, state, plan, str(run.file(PRUNED_CHECKPOINT)))
    return LoadedRun(run.path, recipe, data, splits, base.eval(), pruned.eval(), hashes)


def _read(run: RunDirectory, name: str) -> bytes:
    try:
        return run.file(name).read_bytes()
    except OSError as error:
        raise RunDirError(f"cannot read {run.file(name)} ({error.strerror or error}); the run is incomplete: prune it again") from None
