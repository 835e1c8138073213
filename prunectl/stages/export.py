"""The export stage: a finished run's pruned model as a checked release artifact, beside a dense baseline.

The artifact's format comes from `export.format` (`prunectl.artifacts`); today that is ONNX:
`export/model.onnx` (+ `.xz`), checked for parity with torch, and the unpruned base model as
`export/baseline/model.onnx` for `prunectl bench --against`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from prunectl import __version__
from prunectl.artifacts import EXPORT_FORMATS
from prunectl.errors import IntegrityError
from prunectl.faults import fault_point
from prunectl.files import atomic_write_bytes, atomic_write_json, check_writable, file_sha256, replace_directory
from prunectl.progress import Progress, SilentProgress
from prunectl.recipe import ExportSpec
from prunectl.quantized import calibration_rows, graph_sha256
from prunectl.rundir.layout import (
    BASELINE_DIR,
    EXPORT_DIR,
    EXPORT_RECORD,
    EXPORTED_SUFFIXES,
    INT8_NAME,
    INT8_XZ_NAME,
    ONNX_NAME,
    PLAN,
    PRUNED_CHECKPOINT,
)
from prunectl.rundir.load import LoadedRun, load_run
from prunectl.rundir.manifest import Manifest, Section


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
    record_as: Section = Section.EXPORT,
    audited_sha256: str | None = None,
    audited_plan_sha256: str | None = None,
    audited_int8_graph_sha256: str | None = None,
) -> ExportResult:
    """Export a finished run's pruned model to `export/model.onnx` (+ `.xz`), checked for parity.

    Parity and accuracy use the run's whole holdout split (never trained on) plus random
    inputs. The unpruned base model goes to `export/baseline/model.onnx` with dense storage:
    the baseline for `prunectl bench --against`. The manifest records both files' hashes under
    `record_as`. `privacy_gate` (the verdict, when the caller gated the run) is stored in the
    ONNX metadata, so the file itself says whether it passed; so is the SHA-256 of the
    `pruned.pt` it was exported from (`x.pruned_sha256`), which `prunectl verify` matches
    against the checkpoint the gate audited. With `audited_sha256` (the gate's), a `pruned.pt`
    that changed since the audit is refused (`IntegrityError`) and nothing is exported; so is a
    channel plan (`plan.json`) that differs from `audited_plan_sha256`.

    With `export.quantize = "int8"` the INT8 model is calibrated on the same members the gate
    calibrated on (`prunectl.quantized`) and written with its `.xz`; with
    `audited_int8_graph_sha256` (the gate's) an INT8 graph other than the audited one is refused
    (`IntegrityError`) and nothing is exported.
    """
    progress = progress or SilentProgress()
    loaded = load_run(run_dir)
    source_sha256 = loaded.checkpoints_sha256[PRUNED_CHECKPOINT]
    if audited_sha256 is not None and source_sha256 != audited_sha256:
        raise IntegrityError(
            f"{loaded.path / PRUNED_CHECKPOINT} changed after the gate audited it (sha256 {source_sha256[:12]}…, audited "
            f"{audited_sha256[:12]}…); nothing was exported: gate the run again"
        )
    plan_sha256 = loaded.checkpoints_sha256.get(PLAN)
    if audited_plan_sha256 is not None and plan_sha256 != audited_plan_sha256:
        raise IntegrityError(
            f"{loaded.path / PLAN} changed after the gate audited the model it rebuilds (sha256 {str(plan_sha256)[:12]}…, "
            f"audited {audited_plan_sha256[:12]}…); nothing was exported: gate the run again"
        )
    settings = settings or loaded.recipe.export
    exporter = EXPORT_FORMATS.get(settings.format)
    export_dir = Path(out) if out is not None else loaded.path / EXPORT_DIR
    check_writable(export_dir, "export directory", "pass --out with a directory you can write to")
    holdout = torch.as_tensor(loaded.splits.holdout)
    inputs, labels = loaded.data.x[holdout], loaded.data.y[holdout]
    metadata = export_metadata(loaded, privacy_gate, source_sha256)
    int8 = settings.quantize == "int8"
    calibration = {"calibration_inputs": loaded.data.x[torch.as_tensor(calibration_rows(loaded.splits.members))]} if int8 else {}
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
    with progress.task(f"export {settings.format.upper()} (pruned, then dense baseline)", total=2) as bar:
        report = exporter(
            loaded.pruned_model,
            inputs[:1],
            staging,
            metadata=metadata,
            sparse=settings.sparse,
            quantize=settings.quantize,
            optimize=settings.optimize,
            **calibration,
            **common,
        )
        if int8:
            _check_int8(staging, audited_int8_graph_sha256)
        bar.advance()
        fault_point("export")
        exporter(loaded.base_model, inputs[:1], staging / BASELINE_DIR, metadata=metadata, sparse="dense", **common)
        bar.advance()
    report_dict = _relocate(report.to_dict(), staging, export_dir)
    result = ExportResult(str(loaded.path), str(export_dir), report_dict, str(export_dir / BASELINE_DIR / ONNX_NAME))
    atomic_write_json(staging / EXPORT_RECORD, result.to_dict())
    replace_directory(staging, export_dir)
    Manifest.read(loaded.path).record(
        record_as,
        {
            "dir": _relative_to_run(export_dir, loaded.path),
            "source_checkpoint_sha256": source_sha256,
            "files": {str(p.relative_to(export_dir)): file_sha256(p) for p in exported_files(export_dir)},
            "sizes": report_dict["sizes"],
            "parity": report_dict["parity"],
        },
    )
    return result


def _check_int8(staging: Path, audited: str | None) -> None:
    """Write the INT8 file's `.xz`; refuse an INT8 graph that is not the audited one."""
    from exporters.compress import compress_xz

    int8_path = staging / INT8_NAME
    payload = int8_path.read_bytes()
    graph = graph_sha256(payload) if audited is not None else None
    if graph != audited:
        shutil.rmtree(staging, ignore_errors=True)
        raise IntegrityError(
            f"the INT8 model exported now (graph sha256 {str(graph)[:12]}…) is not the one the gate audited "
            f"({audited[:12]}…); nothing was exported: gate the run again"
        )
    atomic_write_bytes(staging / INT8_XZ_NAME, compress_xz(payload))


def exported_files(export_dir: Path) -> list[Path]:
    """The model files under an export directory (what the manifest hashes and verify re-checks)."""
    return sorted(p for p in export_dir.rglob("*") if p.is_file() and p.suffix in EXPORTED_SUFFIXES)


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
