"""The public Python API. Every CLI command is a thin wrapper over a function here.

    from prunectl.api import gate, prune, resolve_recipe
    result = prune(resolve_recipe(flags={"prune.target_sparsity": 0.9}).recipe, out="runs/demo")
    print(result.pruned_accuracy, result.sparsity["global_sparsity"])
    audit = gate("runs/demo")      # shadows, attacks, verdict; reports in runs/demo/gate/
    print(audit.passed, audit.result.reason)

Results are frozen dataclasses with `to_dict()` for JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunectl import __version__
from prunectl.cache import resolve_cache_dir, samples_fingerprint
from prunectl.config import ResolvedRecipe, recipe_sha256, resolve, to_toml
from prunectl.config import resolve as resolve_recipe
from prunectl.data import Dataset, Splits, check_source, load_dataset, make_splits
from prunectl.defenses.memscore import MemScores, cached_estimate, read_csv, write_csv
from prunectl.errors import IntegrityError, PrunectlError, RunDirError
from prunectl.faults import fault_point
from prunectl.gating import GATE_DIR, GateOutcome, audit, check_gate_feasible, write_reports
from prunectl.models import check_source as check_model_source
from prunectl.models import load_state_dict_bytes, load_state_dict_file, load_weights
from prunectl.pipeline import (
    BASE_CHECKPOINT,
    PipelineFunction,
    check_victim_model,
    fresh_model,
    helper_trainers,
    pipeline_function,
    run_pipeline,
)
from prunectl.progress import Progress, SilentProgress
from prunectl.pruning.masks import check_sparsity, measure_sparsity
from prunectl.recipe import ExportSpec, GateSpec, Recipe, validate
from prunectl.run import (
    MANIFEST,
    RECIPE,
    RunDirectory,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    replace_directory,
)
from prunectl.training import evaluate, resolve_device

__all__ = [
    "compress",
    "ExportResult",
    "GateOutcome",
    "GateSpec",
    "export",
    "gate",
    "LoadedRun",
    "MemscoreResult",
    "memscore",
    "PipelineFunction",
    "PruneResult",
    "Recipe",
    "ResolvedRecipe",
    "load_run",
    "pipeline_function",
    "prune",
    "resolve_recipe",
    "RunResult",
    "verify",
    "VerifyResult",
]

SPLITS_FILE = "splits.json"
PRUNED_CHECKPOINT = "pruned.pt"
MASKS_FILE = "masks.pt"
PRUNE_RESULT = "prune.json"
DEFENSE_FILE = "defense.json"
EXPORT_DIR = "export"
BASELINE_DIR = "baseline"


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime

    return {
        "prunectl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


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


def stored_recipe(run_dir: Path) -> Recipe:
    """The resolved recipe a run was started with."""
    run = RunDirectory.open_existing(Path(run_dir))
    try:
        return resolve(config=run.file(RECIPE), env={}).recipe
    except PrunectlError as error:
        raise RunDirError(f"{run.file(RECIPE)} is damaged ({error}); prune the run again with --overwrite") from None


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
    data, splits = _preflight(recipe)
    if gate_settings is not None:
        check_gate_feasible(recipe, data, splits, gate_settings)
    path = Path(out) if out is not None else Path("runs") / recipe.run_name
    run = RunDirectory.prepare(path, overwrite=overwrite, resume=resume)
    if resume:
        _check_resumable(run, recipe)
    else:
        atomic_write_text(run.file(RECIPE), to_toml(recipe))

    splits_path = run.file(SPLITS_FILE)
    if resume and splits_path.is_file():
        recorded = Splits.from_dict(json.loads(splits_path.read_text()))
        if recorded.to_dict() != splits.to_dict():
            raise RunDirError(f"{splits_path} does not match the splits this recipe makes; start a new run")
    else:
        atomic_write_json(splits_path, splits.to_dict())
    load_seconds = time.perf_counter() - started

    output = run_pipeline(
        recipe, splits.members, splits.dev, recipe.seed, victim=True, run=run, progress=progress, cache_dir=resolve_cache_dir(cache_dir)
    )
    defense = output.defense.describe()
    atomic_write_json(run.file(DEFENSE_FILE), defense)

    started = time.perf_counter()
    device = resolve_device(recipe.device)
    atomic_torch_save(run.file(PRUNED_CHECKPOINT), {k: v.cpu() for k, v in output.pruned_model.state_dict().items()})
    atomic_torch_save(run.file(MASKS_FILE), {k: v.cpu() for k, v in output.outcome.masks.items()})
    saved = load_state_dict_file(run.file(PRUNED_CHECKPOINT))
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
    )
    atomic_write_json(run.file(PRUNE_RESULT), result.to_dict())
    _write_manifest(run, recipe, result, split_hashes(data, splits))
    return result


def _preflight(recipe: Recipe) -> tuple[Dataset, Splits]:
    """Every check of a recipe's inputs that needs no training, before anything is written:
    sources and paths, the device, the data itself, the splits, a memorization-score file, and
    the victim's model built (and its checkpoint loaded) on this data. Returns the data and splits."""
    check_source(recipe.data)
    check_model_source(recipe.model)
    resolve_device(recipe.device)
    data = load_dataset(recipe.data)
    splits = make_splits(data.y, recipe.data, recipe.seed)
    _check_memscore_file(recipe, splits)
    check_victim_model(recipe, data)
    return data, splits


def _check_memscore_file(recipe: Recipe, splits: Splits) -> None:
    """A given memorization-score file must cover every member: refused before any work."""
    if recipe.defense.name == "wemem" and recipe.defense.memscores:
        read_csv(recipe.defense.memscores).lookup(splits.members)


def split_hashes(data: Dataset, splits: Splits) -> dict[str, dict[str, Any]]:
    """Per split: its size and the SHA-256 of its samples (indices, inputs, labels), so a manifest
    proves which data the model trained on and was audited against, not just how it was cut."""
    return {
        name: {"size": size, "sha256": samples_fingerprint(data.x, data.y, getattr(splits, name))} for name, size in splits.sizes().items()
    }


def _write_manifest(run: RunDirectory, recipe: Recipe, result: PruneResult, splits: dict[str, dict[str, Any]]) -> None:
    """Written last: its presence is what marks the run finished."""
    files = [RECIPE, SPLITS_FILE, BASE_CHECKPOINT, PRUNED_CHECKPOINT, MASKS_FILE, DEFENSE_FILE, PRUNE_RESULT]
    manifest = {
        "stage": "pruned",
        "versions": _versions(),
        "recipe_sha256": recipe_sha256(recipe),
        "data_source": recipe.data.source,
        "splits": splits,
        "files": {name: file_sha256(run.file(name)) for name in files if run.file(name).is_file()},
        "metrics": {
            "base_accuracy": result.base_accuracy,
            "pruned_accuracy": result.pruned_accuracy,
            "global_sparsity": result.sparsity["global_sparsity"],
        },
        "defense": result.defense,
        "base_source": result.base_source,
        "seconds": result.seconds,
    }
    atomic_write_json(run.file(MANIFEST), manifest)


@dataclass(frozen=True)
class ExportResult:
    """What `prunectl export` wrote: the pruned model's report and the dense baseline's path."""

    run_dir: str
    export_dir: str
    report: dict[str, Any]
    baseline_onnx: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_metadata(loaded: LoadedRun, privacy_gate: str | None = None, source_sha256: str | None = None) -> Any:
    """Class names and preprocessing, so a device can use the ONNX file alone; the verdict and
    the source checkpoint's hash, so the file itself says which audited model it is."""
    from exporters import ExportMetadata

    pre = loaded.data.preprocessing
    extra = {
        "run": loaded.recipe.run_name,
        "data_source": loaded.recipe.data.source,
        "input_kind": str(pre.get("kind", "")),
        "scale": repr(pre.get("scale", 1.0)),
        "preprocessing": "x = (raw * scale - mean) / std, per channel (images) or per feature",
        "prunectl_version": __version__,
    }
    if privacy_gate is not None:
        extra["privacy_gate"] = privacy_gate
    if source_sha256 is not None:
        extra["pruned_sha256"] = source_sha256
    return ExportMetadata(class_names=loaded.data.classes, mean=tuple(pre["mean"]), std=tuple(pre["std"]), extra=extra)


def export(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    settings: ExportSpec | None = None,
    progress: Progress | None = None,
    privacy_gate: str | None = None,
    record_as: str = "export",
    audited_sha256: str | None = None,
) -> ExportResult:
    """Export a finished run's pruned model to `export/model.onnx` (+ `.xz`), checked for parity.

    Parity and accuracy use the run's whole holdout split (never trained on) plus random
    inputs. The unpruned base model goes to `export/baseline/model.onnx` with dense storage:
    the baseline for `prunectl bench --against`. The manifest records both files' hashes under
    `record_as`. `privacy_gate` (the verdict, when the caller gated the run) is stored in the
    ONNX metadata, so the file itself says whether it passed; so is the SHA-256 of the
    `pruned.pt` it was exported from (`x.pruned_sha256`), which `prunectl verify` matches
    against the checkpoint the gate audited. With `audited_sha256` (the gate's), a `pruned.pt`
    that changed since the audit is refused (`IntegrityError`) and nothing is exported.
    """
    from exporters import export_model

    progress = progress or SilentProgress()
    loaded = load_run(run_dir)
    source_sha256 = loaded.checkpoints_sha256[PRUNED_CHECKPOINT]
    if audited_sha256 is not None and source_sha256 != audited_sha256:
        raise IntegrityError(
            f"{loaded.path / PRUNED_CHECKPOINT} changed after the gate audited it (sha256 {source_sha256[:12]}…, audited "
            f"{audited_sha256[:12]}…); nothing was exported: gate the run again"
        )
    settings = settings or loaded.recipe.export
    export_dir = Path(out) if out is not None else loaded.path / EXPORT_DIR
    holdout = torch.as_tensor(loaded.splits.holdout)
    inputs, labels = loaded.data.x[holdout], loaded.data.y[holdout]
    metadata = export_metadata(loaded, privacy_gate, source_sha256)
    common = dict(
        parity_inputs=inputs,
        parity_labels=labels,
        tolerance=settings.tolerance,
        opset=settings.opset,
        seed=loaded.recipe.seed,
    )
    # Export into a staging directory and move it into place only when both models passed
    # their checks: a failed or killed export never leaves a model.onnx that looks released.
    staging = export_dir.with_name(f".{export_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    with progress.task("export ONNX (pruned, then dense baseline)", total=2) as bar:
        report = export_model(
            loaded.pruned_model, inputs[:1], staging, metadata=metadata, sparse=settings.sparse, quantize=settings.quantize, **common
        )
        bar.advance()
        fault_point("export")
        export_model(loaded.base_model, inputs[:1], staging / BASELINE_DIR, metadata=metadata, sparse="dense", **common)
        bar.advance()
    report_dict = _relocate(report.to_dict(), staging, export_dir)
    result = ExportResult(str(loaded.path), str(export_dir), report_dict, str(export_dir / BASELINE_DIR / "model.onnx"))
    atomic_write_json(staging / "export.json", result.to_dict())
    replace_directory(staging, export_dir)
    record_in_manifest(
        loaded.path,
        record_as,
        {
            "dir": _relative_to_run(export_dir, loaded.path),
            "source_checkpoint_sha256": source_sha256,
            "files": {str(p.relative_to(export_dir)): file_sha256(p) for p in _export_files(export_dir)},
            "sizes": report_dict["sizes"],
            "parity": report_dict["parity"],
        },
    )
    return result


def _relative_to_run(path: Path, run_dir: Path) -> str:
    """A path inside the run directory as relative to it (the record survives moving the run), others absolute."""
    try:
        return str(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(path.resolve())


def _relocate(report: dict[str, Any], staging: Path, final: Path) -> dict[str, Any]:
    for key in ("onnx_path", "xz_path", "int8_path", "dense_path"):
        if report.get(key):
            report[key] = str(final / Path(report[key]).relative_to(staging))
    return report


def _export_files(export_dir: Path) -> list[Path]:
    return sorted(p for p in export_dir.rglob("*") if p.is_file() and p.suffix in (".onnx", ".xz"))


def forget_in_manifest(run_dir: Path, sections: tuple[str, ...]) -> None:
    """Remove sections of a finished run's manifest (atomically); absent ones are fine."""
    path = run_dir / MANIFEST
    manifest = json.loads(path.read_text())
    if any(section in manifest for section in sections):
        atomic_write_json(path, {k: v for k, v in manifest.items() if k not in sections})


def record_in_manifest(run_dir: Path, section: str, payload: dict[str, Any]) -> None:
    """Add or replace one section of a finished run's manifest (atomically)."""
    path = run_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest[section] = payload
    atomic_write_json(path, manifest)


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load a finished run: its recipe, data, splits, base and pruned models (eval mode, CPU)."""
    path = Path(run_dir)
    run = RunDirectory.open_existing(path)
    if not run.is_finished:
        raise RunDirError(f"{path} holds an unfinished run; finish it with prunectl prune --resume {path}")
    recipe = stored_recipe(path)
    data = load_dataset(recipe.data)
    splits = Splits.from_dict(json.loads(run.file(SPLITS_FILE).read_text()))
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
    return LoadedRun(path, recipe, data, splits, models[0], models[1], hashes)


def gate(
    run_dir: str | Path,
    *,
    settings: GateSpec | None = None,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
) -> GateOutcome:
    """Audit a finished run's pruned model (and its original) for membership leakage.

    Shadows re-run the run's stored recipe on the shadow pool; `settings` (default: the
    recipe's `[gate]`) decide what is measured and where the threshold lies. Writes
    `gate/report.json`, `junit.xml`, `summary.md` and `roc.png`, records the verdict and the
    audited checkpoints' hashes in the manifest, and returns the verdict: check `.passed`.
    Data too small for a meaningful verdict raises a `PrunectlError` before any training.
    Shadows reuse base models and memorization scores from `cache_dir` (default: the user cache).
    """
    loaded = load_run(run_dir)
    audited = loaded.checkpoints_sha256
    check_gate_feasible(loaded.recipe, loaded.data, loaded.splits, settings)  # bad settings lose nothing
    # A new audit supersedes the last verdict at once: a gate that crashes, is killed or is
    # interrupted must not leave an earlier pass on record for these checkpoints.
    forget_in_manifest(loaded.path, ("gate",))
    result = audit(loaded, settings, progress, resolve_cache_dir(cache_dir))
    context = {"versions": _versions(), "run_dir": str(loaded.path), "checkpoints_sha256": audited}
    gate_dir = loaded.path / GATE_DIR
    reports = write_reports(result, gate_dir, context)
    pruned = result.pruned
    headline = pruned.metrics(result.deciding_attack).to_dict() if pruned and result.deciding_attack else None
    record_in_manifest(
        loaded.path,
        "gate",
        {
            "verdict": result.verdict,
            "passed": result.passed,
            "reason": result.reason,
            "max_advantage": result.max_advantage,
            "strict": result.strict,
            "deciding_attack": result.deciding_attack,
            "gated_value": result.to_dict()["gated_value"],
            "deciding_metrics": headline,
            "checkpoints_sha256": audited,
            "reports_sha256": {name: file_sha256(path) for name, path in reports.items()},
        },
    )
    return GateOutcome(str(loaded.path), str(gate_dir), result, dict(audited))


def reusable_run(out: Path, recipe: Recipe) -> bool:
    """Whether `out` holds a finished run of `recipe`, gate and export settings aside (they do not
    change the pruned model), so `gate` and `compress --resume` can skip pruning."""
    run_file = out / MANIFEST
    if not run_file.is_file():
        return False
    try:
        stored = stored_recipe(out)
    except PrunectlError:
        return False
    return _model_settings(stored) == _model_settings(recipe)


def _model_settings(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, gate=GateSpec(), export=ExportSpec())


@dataclass(frozen=True, eq=False)
class MemscoreResult:
    """What `prunectl memscore` reports: the scores, their noise, cost, and the cache entry used."""

    scores: MemScores
    cached: bool
    cache_entry: dict[str, str] | None
    models: int
    members: int
    seconds: float
    split_half_spearman: float | None
    summary: dict[str, Any]
    csv_path: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "scores"} | {"source": self.scores.source}


def memscore(
    recipe: Recipe,
    *,
    models: int | None = None,
    seed: int | None = None,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
) -> MemscoreResult:
    """Memorization scores of the recipe's members split, from the cache or computed and cached.

    `models` (default `defense.memscore_models`) helper models train on complementary halves of
    the members with the recipe's base-training settings. `seed` (default the recipe's) picks
    the halves and initialisations, so a second seed gives an independent estimate. `out` also
    writes them as CSV (`index,score`), the format `defense.memscores` loads.
    """
    if models is not None:
        recipe = validate(dataclasses.replace(recipe, defense=dataclasses.replace(recipe.defense, memscore_models=models)))
    started = time.perf_counter()
    check_source(recipe.data)
    check_model_source(recipe.model)
    device = resolve_device(recipe.device)
    data = load_dataset(recipe.data)
    splits = make_splits(data.y, recipe.data, recipe.seed)
    scores, entry, cached = cached_estimate(
        recipe,
        data,
        splits.members,
        seed=recipe.seed if seed is None else seed,
        **helper_trainers(recipe, data),
        device=device,
        cache_dir=resolve_cache_dir(cache_dir),
        progress=progress,
    )
    if out is not None:
        write_csv(Path(out), scores)
    return MemscoreResult(
        scores=scores,
        cached=cached,
        cache_entry=entry.to_dict() if entry is not None else None,
        models=recipe.defense.memscore_models,
        members=len(splits.members),
        seconds=time.perf_counter() - started,
        split_half_spearman=scores.split_half_spearman,
        summary=scores.summary(recipe.defense.rmr_threshold),
        csv_path=str(out) if out is not None else None,
    )


# `compress` composes the functions above, so it lives in its own module and is re-exported here.
from prunectl.release import RunResult, compress  # noqa: E402
from prunectl.verify import VerifyResult, verify  # noqa: E402
