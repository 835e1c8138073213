"""`compress`: the whole pipeline as one release step whose verdict a CI job can block on.

    base model → defended iterative prune → privacy gate → (only if it passed) ONNX export,
    parity check, onnxruntime benchmark against the dense model → manifest

A run that fails the gate keeps its evidence (`gate/`, checkpoints, manifest) and gets no
release artifact: no `export/model.onnx`. With `export_on_fail` the model is exported into
`export/quarantine/` for debugging, with a `NOT-FOR-RELEASE.txt` beside it and the failed
verdict written into the ONNX file's own metadata.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunectl.config import recipe_sha256
from prunectl.defenses import defense_label
from prunectl.executors import Execution, check_execution
from prunectl.files import atomic_write_text, file_sha256
from prunectl.progress import Progress, SilentProgress
from prunectl.recipe import ExportSpec, Recipe
from prunectl.rundir.layout import BENCH, EXPORT_DIR, INT8_XZ_NAME, PLAN, PRUNED_CHECKPOINT, QUARANTINE_DIR, QUARANTINE_NOTE
from prunectl.rundir.manifest import Manifest, Section, Stage
from prunectl.stages.export import ExportResult, export
from prunectl.stages.gate import GateOutcome, gate
from prunectl.stages.prune import prune_or_reuse


@dataclass(frozen=True)
class GateHeadline:
    """The verdict and the one figure that decided it (the full evidence is in `report_dir`)."""

    verdict: str
    passed: bool
    reason: str
    max_advantage: float
    strict: bool
    deciding_attack: str | None
    advantage: float | None
    advantage_interval: tuple[float, float] | None
    original_advantage: float | None
    resolution: float
    report_dir: str


@dataclass(frozen=True)
class ArtifactHeadline:
    """The exported ONNX file and its size against the dense export of the unpruned model."""

    path: str
    xz_path: str
    sha256: str
    quarantined: bool
    onnx_bytes: int
    dense_onnx_bytes: int
    size_ratio: float
    xz_ratio: float
    parity_max_abs_diff: float
    int8_to_fp32: float | None = None
    """INT8 only: its p50 latency against the fp32 model on this host (report only)."""
    int8_accuracy: float | None = None
    """INT8 only: its holdout accuracy (the fp32 figure is the run's pruned accuracy)."""
    xz_bytes: int | None = None


@dataclass(frozen=True)
class LatencyHeadline:
    """onnxruntime CPU latency of the artifact against the dense baseline, measured interleaved."""

    p50_ms: float
    dense_p50_ms: float
    latency_ratio: float
    threads: int
    batch: int
    bench_path: str
    peak_rss_ratio: float | None = None
    """Peak RSS of a fresh process holding the session, against the dense baseline's."""
    file_ratio: float | None = None
    """Bytes of the artifact against the dense baseline's ONNX file (a channel-pruned model is smaller dense)."""


@dataclass(frozen=True)
class RunResult:
    """What `prunectl compress` reports. `passed` decides the exit code (0 or 1);
    `artifact` is None unless the model was exported (released, or quarantined on request)."""

    run_dir: str
    recipe: dict[str, Any]
    recipe_sha256: str
    defense: str
    base_accuracy: float
    pruned_accuracy: float
    target_sparsity: float
    sparsity: float
    gate: GateHeadline
    artifact: ArtifactHeadline | None
    latency: LatencyHeadline | None
    seconds: dict[str, float]
    origins: dict[str, str] = field(default_factory=dict)
    config_file: str | None = None

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def released(self) -> bool:
        return self.artifact is not None and not self.artifact.quarantined

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "released": self.released}


def compress(
    recipe: Recipe,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    export_on_fail: bool = False,
    progress: Progress | None = None,
    origins: dict[str, str] | None = None,
    config_file: str | Path | None = None,
    cache_dir: str | Path | None = None,
    bench_runs: int = 200,
    execution: Execution | None = None,
) -> RunResult:
    """Prune `recipe`, gate the pruned model, and export and benchmark it only if it passed.

    `resume=True` continues the run in `out`: an unfinished prune resumes from its last round;
    a finished prune of the same recipe (gate and export settings aside) is gated again without
    retraining. Check `.passed`: a failed gate is a result, not an exception. Bad input raises
    a `PrunectlError` before anything is written, an executor that cannot run here (Ray missing,
    a cluster unreachable) included. `execution` says where the gate's units run.
    """
    check_execution(execution)
    progress = progress or SilentProgress()
    started = time.perf_counter()
    path = Path(out) if out is not None else Path("runs") / recipe.run_name
    seconds: dict[str, float] = {}

    clock = time.perf_counter()
    options = dict(resume=resume, overwrite=overwrite, progress=progress, origins=origins, cache_dir=cache_dir, gate_settings=recipe.gate)
    pruned = prune_or_reuse(recipe, path, reuse=resume, **options)
    seconds["prune"] = time.perf_counter() - clock

    clock = time.perf_counter()
    outcome = gate(path, settings=recipe.gate, progress=progress, cache_dir=cache_dir, execution=execution)
    seconds["gate"] = time.perf_counter() - clock
    headline = _gate_headline(outcome)

    export_dir = path / EXPORT_DIR
    manifest = Manifest.read(path)
    artifact = latency = None
    clock = time.perf_counter()
    if headline.passed:
        manifest.forget(Section.QUARANTINE)  # the export below replaces export/ whole, quarantine included
        exported = export(
            path,
            settings=recipe.export,
            progress=progress,
            privacy_gate=f"passed: {headline.reason}",
            audited_sha256=outcome.checkpoints_sha256[PRUNED_CHECKPOINT],
            audited_plan_sha256=outcome.checkpoints_sha256.get(PLAN),
            audited_int8_graph_sha256=outcome.int8_graph_sha256,
        )
        artifact = _artifact_headline(exported, quarantined=False)
        seconds["export"] = time.perf_counter() - clock
        clock = time.perf_counter()
        latency = _bench_stage(exported, recipe.export, runs=bench_runs, progress=progress)
        seconds["bench"] = time.perf_counter() - clock
    else:
        # No release artifact may survive a failed gate, not even one from an earlier attempt.
        shutil.rmtree(export_dir, ignore_errors=True)
        manifest.forget(Section.EXPORT, Section.BENCH, Section.QUARANTINE)
        if export_on_fail:
            quarantine = export_dir / QUARANTINE_DIR
            exported = export(
                path,
                out=quarantine,
                settings=recipe.export,
                progress=progress,
                privacy_gate=f"FAILED, not for release: {headline.reason}",
                record_as=Section.QUARANTINE,
            )
            atomic_write_text(quarantine / QUARANTINE_NOTE, _quarantine_note(headline))
            artifact = _artifact_headline(exported, quarantined=True)
            seconds["export"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - started

    result = RunResult(
        run_dir=str(path),
        recipe=recipe.to_dict(),
        recipe_sha256=recipe_sha256(recipe),
        defense=defense_label(recipe.defense),
        base_accuracy=pruned.base_accuracy,
        pruned_accuracy=pruned.pruned_accuracy,
        target_sparsity=recipe.prune.target_sparsity,
        sparsity=pruned.sparsity["global_sparsity"],
        gate=headline,
        artifact=artifact,
        latency=latency,
        seconds=seconds,
        origins=dict(origins or {}),
        config_file=str(config_file) if config_file is not None else None,
    )
    _record_release(path, result)
    return result


def _gate_headline(outcome: GateOutcome) -> GateHeadline:
    result = outcome.result
    deciding = result.deciding_attack
    metrics = result.pruned.metrics(deciding) if result.pruned is not None and deciding else None
    original = result.original.metrics(deciding) if result.original is not None and deciding else None
    return GateHeadline(
        verdict=result.verdict,
        passed=result.passed,
        reason=result.reason,
        max_advantage=result.max_advantage,
        strict=result.strict,
        deciding_attack=deciding,
        advantage=metrics.advantage if metrics else None,
        advantage_interval=(metrics.advantage_low, metrics.advantage_high) if metrics else None,
        original_advantage=original.advantage if original else None,
        resolution=result.resolution,
        report_dir=outcome.gate_dir,
    )


def release_files(exported: ExportResult) -> tuple[Path, Path]:
    """The file that ships and its `.xz`: the INT8 model with `export.quantize = "int8"`, else the fp32 one."""
    report = exported.report
    if report.get("int8_path"):
        int8 = Path(report["int8_path"])
        return int8, int8.with_name(INT8_XZ_NAME)
    return Path(report["onnx_path"]), Path(report["xz_path"])


def _artifact_headline(exported: ExportResult, *, quarantined: bool) -> ArtifactHeadline:
    report = exported.report
    sizes = report["sizes"]
    onnx_path, xz_path = release_files(exported)
    onnx_bytes, xz_bytes = onnx_path.stat().st_size, xz_path.stat().st_size
    return ArtifactHeadline(
        path=str(onnx_path),
        xz_path=str(xz_path),
        sha256=file_sha256(onnx_path),
        quarantined=quarantined,
        onnx_bytes=onnx_bytes,
        dense_onnx_bytes=sizes["dense_onnx_bytes"],
        size_ratio=onnx_bytes / sizes["dense_onnx_bytes"],
        xz_ratio=xz_bytes / sizes["dense_onnx_bytes"],
        parity_max_abs_diff=report["parity"]["max_abs_diff"],
        int8_to_fp32=(report.get("int8_latency") or {}).get("int8_to_fp32"),
        int8_accuracy=(report.get("quantization") or {}).get("accuracy_int8"),
        xz_bytes=xz_bytes,
    )


def _bench_stage(exported: ExportResult, settings: ExportSpec, *, runs: int, progress: Progress) -> LatencyHeadline:
    """The released model against the dense baseline, interleaved in one process (ratios, not absolutes)."""
    from exporters import benchmark, write_result

    model, _ = release_files(exported)
    with progress.task("benchmark ONNX against the dense model", total=1) as bar:
        result = benchmark(model, against=Path(exported.baseline_onnx), threads=settings.bench_threads, batch=settings.bench_batch, runs=runs)
        bar.advance()
    bench_path = write_result(result, model.parent / BENCH)
    assert result.baseline is not None and result.ratios is not None
    Manifest.read(Path(exported.run_dir)).record(
        Section.BENCH,
        {
            "path": str(bench_path),
            "ratios": asdict(result.ratios),
            "p50_ms": result.candidate.latency.p50_ms,
            "dense_p50_ms": result.baseline.latency.p50_ms,
        },
    )
    return LatencyHeadline(
        p50_ms=result.candidate.latency.p50_ms,
        dense_p50_ms=result.baseline.latency.p50_ms,
        latency_ratio=result.ratios.p50_latency,
        threads=result.threads,
        batch=result.batch,
        bench_path=str(bench_path),
        peak_rss_ratio=result.ratios.peak_rss,
        file_ratio=result.ratios.file_bytes,
    )


def _quarantine_note(gate: GateHeadline) -> str:
    return (
        "NOT FOR RELEASE.\n\n"
        f"This model FAILED the privacy gate: {gate.reason}\n"
        "It was exported only because --export-on-fail was given, to debug the failure.\n"
        f"The gate's evidence is in {gate.report_dir}/summary.md and report.json.\n"
    )


def _record_release(path: Path, result: RunResult) -> None:
    """The manifest's release section: verdict, artifact, every headline metric, time per stage."""
    stage = Stage.RELEASED if result.released else (Stage.QUARANTINED if result.artifact else Stage.GATE_FAILED)
    release = {
        "verdict": result.gate.verdict,
        "passed": result.passed,
        "released": result.released,
        "artifact": asdict(result.artifact) if result.artifact else None,
        "headline": {
            "base_accuracy": result.base_accuracy,
            "pruned_accuracy": result.pruned_accuracy,
            "target_sparsity": result.target_sparsity,
            "sparsity": result.sparsity,
            "gate": asdict(result.gate),
            "latency": asdict(result.latency) if result.latency else None,
        },
        "recipe_sha256": result.recipe_sha256,
        "origins": result.origins,
        "config_file": result.config_file,
        "seconds": result.seconds,
    }
    Manifest.read(path).update({Section.STAGE: stage.value, Section.RELEASE: release})
