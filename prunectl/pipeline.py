"""The victim's whole pipeline as one function: base model → defended iterative pruning.

`run_pipeline(recipe, member_indices, dev_indices, seed)` is the function the privacy gate
calls for every shadow model, so shadows run exactly the victim's code path (DESIGN.md,
"Interfaces"). The victim's own run passes `victim=True` (load the recipe's base checkpoint if
it has one) and a run directory (save the base model, per-round checkpoints, resume).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gates.seeds import derive_seed
from prunectl.cache import ContentCache, training_inputs
from prunectl.data import Dataset, load_dataset
from prunectl.defenses import make_defense
from prunectl.defenses.base import Defense, DefenseContext
from prunectl.files import atomic_torch_save
from prunectl.memscores import MemScores, cached_estimate, read_csv
from prunectl.models import build_model, data_shape, fresh_model, has_base_weights, load_state_dict_file, load_weights
from prunectl.optimizers import OptimizerSettings
from prunectl.progress import Progress, SilentProgress
from prunectl.pruning.channels import check_reachable
from prunectl.pruning.engine import PruneOutcome, prune_iteratively
from prunectl.recipe import Recipe
from prunectl.rundir.directory import RunDirectory
from prunectl.rundir.layout import BASE_CHECKPOINT
from prunectl.training import fit, resolve_device

PipelineFunction = Callable[[Recipe, np.ndarray, np.ndarray, int], tuple[nn.Module, nn.Module]]


@dataclass(frozen=True, eq=False)
class PipelineOutput:
    base_model: nn.Module
    pruned_model: nn.Module
    outcome: PruneOutcome
    base_seconds: float
    prune_seconds: float
    base_trained: bool
    defense: Defense
    base_source: str


def check_victim_model(recipe: Recipe, data: Dataset) -> None:
    """Build the victim's base model once, loading its checkpoint, before any file is written:
    a model that does not fit the data, or a checkpoint that is hostile, broken or of another
    architecture, is refused (a `ModelError`) without leaving a run directory behind."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(recipe.seed, "init"))
        build_model(recipe.model, data_shape(data), load_weights_from_spec=has_base_weights(recipe.model))


def check_channel_recipe(recipe: Recipe, data: Dataset) -> None:
    """With `prune.structure = "channel"`: refuse, before anything trains, a model Torch-Pruning
    cannot rewrite or a target no rounded channel configuration reaches."""
    if recipe.prune.structure != "channel":
        return
    spec = recipe.prune
    with torch.random.fork_rng(devices=[]):
        model = fresh_model(recipe, data, recipe.seed)
    check_reachable(
        model,
        torch.zeros(1, *data.input_shape),
        target=spec.target_sparsity,
        scope=spec.scope,
        round_to=spec.round_to,
        keep_first=spec.keep_first_dense,
    )


def clone_model(model: nn.Module, recipe: Recipe, data: Dataset, seed: int) -> nn.Module:
    """An independent copy: rebuilt and loaded, because deep-copying TorchScript modules breaks autograd."""
    clone = fresh_model(recipe, data, seed)
    clone.load_state_dict(model.state_dict())
    return clone.to(next(model.parameters()).device)


def fit_like_base(
    model: nn.Module,
    recipe: Recipe,
    data: Dataset,
    indices: np.ndarray,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train with the recipe's base-training settings: the base model and any helper model."""
    t = recipe.train
    return fit(
        model,
        data,
        indices,
        epochs=t.epochs,
        batch_size=t.batch_size,
        optimizer=OptimizerSettings(t.optimizer, t.lr, t.momentum, t.weight_decay),
        seed=seed,
        device=resolve_device(recipe.device),
        on_epoch=on_epoch,
    )


def helper_trainers(recipe: Recipe, data: Dataset) -> dict[str, Callable[..., nn.Module]]:
    """`build_model(seed)` and `fit(model, indices, seed)` for helper models: the victim's architecture and base training."""
    return {
        "build_model": lambda helper_seed: fresh_model(recipe, data, helper_seed),
        "fit": lambda model, indices, helper_seed: fit_like_base(model, recipe, data, indices, helper_seed),
    }


def memorization_scores_of(
    recipe: Recipe, data: Dataset, members: np.ndarray, seed: int, *, victim: bool, cache_dir: Path | None, progress: Progress
) -> Callable[[str | None], MemScores]:
    """The `memorization_scores(csv_file)` a defense's context offers: the victim's from `csv_file`
    when one is given, else estimated by helper models of this pipeline (or found in the cache)."""

    def scores(csv_file: str | None) -> MemScores:
        if victim and csv_file:
            return read_csv(csv_file)
        estimated, _, _ = cached_estimate(
            recipe,
            data,
            members,
            seed=seed,
            **helper_trainers(recipe, data),
            device=resolve_device(recipe.device),
            cache_dir=cache_dir,
            progress=progress,
        )
        return estimated

    return scores


def train_base(model: nn.Module, recipe: Recipe, data: Dataset, members: np.ndarray, seed: int, progress: Progress) -> nn.Module:
    with progress.task("base training", total=recipe.train.epochs) as bar:
        return fit_like_base(model, recipe, data, members, derive_seed(seed, "base"), lambda epoch, loss: bar.advance())


def cached_base(
    recipe: Recipe, data: Dataset, members: np.ndarray, seed: int, cache_dir: Path | None, progress: Progress
) -> tuple[nn.Module, str]:
    """The base model trained on `members`, from the content cache when an identical one was
    trained before (a rerun, or a defense sweep: defenses change only fine-tuning)."""
    if cache_dir is None:
        return train_base(fresh_model(recipe, data, seed), recipe, data, members, seed, progress), "trained"
    inputs = training_inputs(recipe, data.x, data.y, members, seed=seed, device=resolve_device(recipe.device).type)
    cache = ContentCache(cache_dir)
    entry = cache.entry("base-models", inputs, ".pt")
    model = fresh_model(recipe, data, seed)
    if entry.exists:
        load_weights(model, load_state_dict_file(entry.path), str(entry.path))
        return model, f"cache:{entry.path}"
    model = train_base(model, recipe, data, members, seed, progress)
    atomic_torch_save(entry.path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    cache.describe(entry, inputs)
    return model, "trained"


def run_pipeline(
    recipe: Recipe,
    member_indices: np.ndarray,
    dev_indices: np.ndarray,
    seed: int,
    *,
    victim: bool = False,
    run: RunDirectory | None = None,
    progress: Progress | None = None,
    defense: Defense | None = None,
    cache_dir: Path | None = None,
    data: Dataset | None = None,
) -> PipelineOutput:
    """Base model (trained on `member_indices`, or the victim's given checkpoint), then pruned.

    `cache_dir` (a `prunectl.cache` root) lets base models and memorization scores be reused
    across runs and shadows with identical inputs; None computes everything afresh. `data` is
    the recipe's dataset when the caller holds it already (a gate worker's shared copy).
    """
    progress = progress or SilentProgress()
    data = data if data is not None else load_dataset(recipe.data)
    device = resolve_device(recipe.device)
    members = np.asarray(member_indices, dtype=np.int64)
    dev = np.asarray(dev_indices, dtype=np.int64)

    started = time.perf_counter()
    base_path = run.file(BASE_CHECKPOINT) if run is not None else None
    base_trained = False
    if base_path is not None and base_path.is_file():
        base = fresh_model(recipe, data, seed)
        load_weights(base, load_state_dict_file(base_path), str(base_path))
        base_source = "run"
    elif victim and has_base_weights(recipe.model):
        torch.manual_seed(derive_seed(seed, "init"))
        base = build_model(recipe.model, data_shape(data), load_weights_from_spec=True)
        base_source = "checkpoint"
    else:
        base, base_source = cached_base(recipe, data, members, seed, cache_dir, progress)
        base_trained = base_source == "trained"
    base.to(device).eval()
    if base_path is not None and not base_path.is_file():
        atomic_torch_save(base_path, base.state_dict())
    base_seconds = time.perf_counter() - started

    started = time.perf_counter()
    pruned = clone_model(base, recipe, data, seed)
    defense = defense or make_defense(recipe.defense)
    defense.setup(
        DefenseContext(
            recipe=recipe,
            data=data,
            members=members,
            dev=dev,
            seed=seed,
            device=device,
            total_epochs=recipe.prune.rounds * recipe.prune.epochs_per_round,
            **helper_trainers(recipe, data),
            base_model=base,
            memorization_scores=memorization_scores_of(recipe, data, members, seed, victim=victim, cache_dir=cache_dir, progress=progress),
            victim=victim,
            cache_dir=cache_dir,
            progress=progress,
        )
    )
    outcome = prune_iteratively(
        pruned,
        data,
        members,
        dev,
        spec=recipe.prune,
        train=recipe.train,
        defense=defense,
        seed=seed,
        device=device,
        save_checkpoint=run.save_checkpoint if run is not None else None,
        resume_state=run.latest_checkpoint() if run is not None else None,
        progress=progress,
    )
    return PipelineOutput(base, pruned, outcome, base_seconds, time.perf_counter() - started, base_trained, defense, base_source)


def pipeline_function(progress: Progress | None = None, cache_dir: Path | None = None) -> PipelineFunction:
    """The `(recipe, members, dev, seed) -> (base_model, pruned_model)` function the gate receives."""

    def run(recipe: Recipe, member_indices: np.ndarray, dev_indices: np.ndarray, seed: int) -> tuple[nn.Module, nn.Module]:
        output = run_pipeline(recipe, member_indices, dev_indices, seed, progress=progress, cache_dir=cache_dir)
        return output.base_model, output.pruned_model

    return run
