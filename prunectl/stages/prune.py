"""The prune stage: train (or load) the base model and prune it iteratively into a run directory.

It also owns the decision a later stage needs before it can start: whether a run directory
already holds a finished prune of this recipe that can be reused (`prune_or_reuse`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from prunectl.cache import ContentCache, resolve_cache_dir, samples_fingerprint
from prunectl.config import recipe_sha256, to_toml
from prunectl.data import Dataset, Splits, check_source, load_dataset, make_splits
from prunectl.defenses import make_defense
from prunectl.defenses.base import PreflightContext
from prunectl.errors import PrunectlError, RunDirError
from prunectl.files import atomic_torch_save, atomic_write_json, atomic_write_text, file_sha256
from prunectl.memscores import read_csv
from prunectl.models import check_source as check_model_source
from prunectl.models import load_state_dict_file
from prunectl.pipeline import check_channel_recipe, check_victim_model, run_pipeline
from prunectl.progress import Progress, SilentProgress
from prunectl.pruning.channels import ChannelPlan, channel_tolerance, measure_channel_sparsity, structure_report
from prunectl.pruning.masks import check_sparsity, measure_sparsity
from prunectl.recipe import ExportSpec, GateSpec, Recipe
from prunectl.rundir.directory import RunDirectory
from prunectl.rundir.layout import DEFENSE, MASKS, PLAN, PRUNE_FILES, PRUNE_RESULT, PRUNED_CHECKPOINT, SPLITS
from prunectl.rundir.layout import RECIPE as RECIPE_FILE
from prunectl.rundir.load import rebuild_pruned, stored_recipe
from prunectl.rundir.manifest import Manifest, Stage, library_versions
from prunectl.training import evaluate, resolve_device


@dataclass(frozen=True)
class PruneResult:
    """What `prunectl prune` reports: accuracies on holdout (never trained on), sparsity, timing."""

    run_dir: str
    recipe: dict[str, Any]
    split_sizes: dict[str, int]
    base_accuracy: float
    pruned_accuracy: float
    base_member_accuracy: float
    pruned_member_accuracy: float
    sparsity: dict[str, Any]
    rounds: tuple[dict[str, Any], ...]
    seconds: dict[str, float]
    resumed_from_round: int = 0
    origins: dict[str, str] = field(default_factory=dict)
    defense: dict[str, Any] = field(default_factory=dict)
    base_source: str = "trained"
    structure: dict[str, Any] = field(default_factory=dict)
    """Channel pruning: channels kept per layer, parameters and MACs against the dense model."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, run_dir: Path) -> PruneResult:
        """The result a finished prune recorded (`prune.json`)."""
        stored = json.loads((Path(run_dir) / PRUNE_RESULT).read_text())
        stored["rounds"] = tuple(stored["rounds"])
        return cls(**stored)


def prune(
    recipe: Recipe,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: Progress | None = None,
    origins: dict[str, str] | None = None,
    cache_dir: str | Path | None = None,
    gate_settings: GateSpec | None = None,
) -> PruneResult:
    """Train (or load) the base model and prune it iteratively into a run directory.

    With `gate_settings` (what `compress` passes), data too small for a meaningful gate with
    those settings is refused too, before anything is written or trained.

    With `resume=True`, `out` must hold an unfinished run started with the same recipe; it
    continues from the last finished round and reaches the same weights as an uninterrupted run.
    Base models and memorization scores are reused from `cache_dir` (default: the user cache,
    `prunectl.cache.default_cache_dir()`) when identical inputs were computed before.
    """
    progress = progress or SilentProgress()
    started = time.perf_counter()
    path = Path(out) if out is not None else Path("runs") / recipe.run_name
    cache = resolve_cache_dir(cache_dir)
    data, splits = preflight(recipe, path, cache)
    if gate_settings is not None:
        from prunectl.stages.gate import check_gate_feasible

        check_gate_feasible(recipe, data, splits, gate_settings)
    run = RunDirectory.prepare(path, overwrite=overwrite, resume=resume)
    if resume:
        _check_resumable(run, recipe)
    else:
        atomic_write_text(run.file(RECIPE_FILE), to_toml(recipe))

    splits_path = run.file(SPLITS)
    if resume and splits_path.is_file():
        recorded = Splits.from_dict(json.loads(splits_path.read_text()))
        if recorded.to_dict() != splits.to_dict():
            raise RunDirError(f"{splits_path} does not match the splits this recipe makes; start a new run")
    else:
        atomic_write_json(splits_path, splits.to_dict())
    load_seconds = time.perf_counter() - started

    output = run_pipeline(recipe, splits.members, splits.dev, recipe.seed, victim=True, run=run, progress=progress, cache_dir=cache)
    defense = output.defense.describe()
    atomic_write_json(run.file(DEFENSE), defense)

    started = time.perf_counter()
    device = resolve_device(recipe.device)
    atomic_torch_save(run.file(PRUNED_CHECKPOINT), {k: v.cpu() for k, v in output.pruned_model.state_dict().items()})
    atomic_torch_save(run.file(MASKS), {k: v.cpu() for k, v in output.outcome.masks.items()})
    saved = load_state_dict_file(run.file(PRUNED_CHECKPOINT))
    structure: dict[str, Any] = {"structure": recipe.prune.structure}
    if output.outcome.plan is not None:
        atomic_write_text(run.file(PLAN), output.outcome.plan.to_json())
        plan = ChannelPlan.from_json(run.file(PLAN).read_bytes(), str(run.file(PLAN)))
        rebuilt = rebuild_pruned(recipe, data, saved, plan, str(run.file(PRUNED_CHECKPOINT)))
        sparsity = measure_channel_sparsity(rebuilt, output.base_model)
        # The channel grid's figure is global: layers end where their rounded counts fall.
        tolerance = channel_tolerance(recipe.prune.target_sparsity)
        check_sparsity(sparsity, recipe.prune.target_sparsity, "global", tolerance=tolerance)
        structure.update(structure_report(rebuilt, output.base_model, data.input_shape), tolerance=tolerance)
    else:
        sparsity = measure_sparsity(saved, list(output.outcome.prunable))
        check_sparsity(sparsity, recipe.prune.target_sparsity, recipe.prune.scope)

    base_holdout = evaluate(output.base_model, data, splits.holdout, device=device)
    pruned_holdout = evaluate(output.pruned_model, data, splits.holdout, device=device)
    base_members = evaluate(output.base_model, data, splits.members, device=device)
    pruned_members = evaluate(output.pruned_model, data, splits.members, device=device)
    result = PruneResult(
        run_dir=str(path),
        recipe=recipe.to_dict(),
        split_sizes=splits.sizes(),
        base_accuracy=base_holdout.accuracy,
        pruned_accuracy=pruned_holdout.accuracy,
        base_member_accuracy=base_members.accuracy,
        pruned_member_accuracy=pruned_members.accuracy,
        sparsity=sparsity.to_dict(),
        rounds=tuple(asdict(r) for r in output.outcome.rounds),
        seconds={
            "load": load_seconds,
            "base": output.base_seconds,
            "prune": output.prune_seconds,
            "evaluate": time.perf_counter() - started,
        },
        resumed_from_round=output.outcome.resumed_from_round,
        origins=dict(origins or {}),
        defense=defense,
        base_source=output.base_source,
        structure=structure,
    )
    atomic_write_json(run.file(PRUNE_RESULT), result.to_dict())
    _write_manifest(run, recipe, result, split_hashes(data, splits))
    return result


def prune_or_reuse(recipe: Recipe, out: Path, *, reuse: bool, **options: Any) -> PruneResult:
    """The prune a later stage starts from: a finished run of this recipe in `out`, or a new one.

    With `reuse`, a finished run of the same recipe (gate and export settings aside: they do not
    change the pruned model) is taken as it is, and a finished run of a different recipe is
    refused, or replaced with `overwrite=True`. Otherwise, and for everything else, this is
    `prune(recipe, out=out, **options)`, where `resume=True` continues an unfinished run.
    `compress --resume` reuses; `gate` without a run directory always does.
    """
    finished = RunDirectory(out).is_finished
    if reuse and finished:
        if reusable_run(out, recipe):
            return PruneResult.read(out)
        if not options.get("overwrite"):
            raise RunDirError(f"{out} holds a finished run of a different recipe; pass --overwrite to replace it, or choose another --out")
    return prune(recipe, out=out, **{**options, "resume": bool(options.get("resume")) and not finished})


def preflight(recipe: Recipe, out: Path, cache_dir: Path) -> tuple[Dataset, Splits]:
    """Every check of a recipe's inputs that needs no training, before anything is written:
    sources and paths, the device, the output and cache directories, the data itself, the
    splits, a memorization-score file, and the victim's model built (and its checkpoint loaded)
    on this data. Returns the data and splits."""
    check_source(recipe.data)
    check_model_source(recipe.model)
    resolve_device(recipe.device)
    RunDirectory.check_writable(out)
    ContentCache(cache_dir).check_writable()
    data = load_dataset(recipe.data)
    splits = make_splits(data.y, recipe.data, recipe.seed)
    make_defense(recipe.defense).preflight(PreflightContext(splits.members, read_memorization_scores=read_csv))
    check_victim_model(recipe, data)
    check_channel_recipe(recipe, data)
    return data, splits


def split_hashes(data: Dataset, splits: Splits) -> dict[str, dict[str, Any]]:
    """Per split: its size and the SHA-256 of its samples (indices, inputs, labels), so a manifest
    proves which data the model trained on and was audited against, not just how it was cut."""
    return {
        name: {"size": size, "sha256": samples_fingerprint(data.x, data.y, getattr(splits, name))} for name, size in splits.sizes().items()
    }


def _write_manifest(run: RunDirectory, recipe: Recipe, result: PruneResult, splits: dict[str, dict[str, Any]]) -> None:
    """Written last: its presence is what marks the run finished."""
    Manifest.create(
        run.path,
        {
            "stage": Stage.PRUNED.value,
            "versions": library_versions(),
            "recipe_sha256": recipe_sha256(recipe),
            "data_source": recipe.data.source,
            "splits": splits,
            "files": {name: file_sha256(run.file(name)) for name in PRUNE_FILES if run.file(name).is_file()},
            "metrics": {
                "base_accuracy": result.base_accuracy,
                "pruned_accuracy": result.pruned_accuracy,
                "global_sparsity": result.sparsity["global_sparsity"],
            },
            "defense": result.defense,
            "base_source": result.base_source,
            "seconds": result.seconds,
            # the victim trains in this process at torch's default thread count (the gate's units at gates.executor.UNIT_THREADS)
            "intra_op_threads": torch.get_num_threads(),
        },
    )


def _check_resumable(run: RunDirectory, recipe: Recipe) -> None:
    stored = stored_recipe(run.path)
    if stored != recipe:
        ours, theirs = _flat(recipe.to_dict()), _flat(stored.to_dict())
        different = [k for k in ours if ours[k] != theirs.get(k)]
        raise RunDirError(
            f"the recipe differs from the one {run.path} was started with ({', '.join(different)}); "
            f"resume with the same settings, or start a new run"
        )


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def reusable_run(out: Path, recipe: Recipe) -> bool:
    """Whether `out` holds a finished run of `recipe`, gate and export settings aside (they do not
    change the pruned model), so `gate` and `compress --resume` can skip pruning."""
    if not RunDirectory(out).is_finished:
        return False
    try:
        stored = stored_recipe(out)
    except PrunectlError:
        return False
    return _model_settings(stored) == _model_settings(recipe)


def _model_settings(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, gate=GateSpec(), export=ExportSpec())
