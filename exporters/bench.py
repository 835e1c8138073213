"""onnxruntime CPU benchmark of an exported model, optionally against a dense baseline.

Entry point: :func:`benchmark`. What is measured, precisely (also stored in the result's
`timed` field so a reader of `bench.json` does not have to guess):

* latency: wall-clock time (`time.perf_counter_ns`) of one `InferenceSession.run()` call on a
  preallocated random input batch, outputs returned as numpy arrays. Not timed: process
  start, imports, session creation (model load, expansion of sparse initializers, graph
  optimisation) and the warm-up runs.
* with `against`, both sessions live in this process and their runs are interleaved
  (A B, B A, A B, ...), so drift in CPU frequency or background load hits both alike.
* throughput: samples per second over the timed runs (batch · runs / total time).
* memory: peak RSS of a *fresh* Python process (`python -m exporters._probe ...`)
  that imports onnxruntime, creates the session and runs it; measured in a separate process
  because this one already holds torch, other sessions and allocator caches, which would
  swamp the figure. Its RSS just before the session is reported too.

Sparse storage does not change these figures: onnxruntime expands sparse initializers to
dense tensors at load and runs dense kernels. Only the file sizes differ.

Every session, here and in the memory probe, is opened under the graph optimisation level the
model file declares (`x.session_graph_optimization`; an offline-optimised file says
"disabled", an INT8 file "all", a file without the key gets "all"), so each model is measured
as it ships; the level is reported per model.

:func:`compare_latency` is the short interleaved comparison `export_model` reports for INT8
against fp32: report-only, never a decision.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from exporters.atomic import atomic_write_json
from exporters._ort import PROVIDER
from exporters._probe import PROBE_RUNS
from exporters.errors import ExporterInputError
from exporters.runtime import InputSpec, declared_graph_optimization, input_spec, load_onnx, loading_level, open_session, resolve_batch_shape

SCHEMA_VERSION = 1
DEFAULT_RUNS = 200
DEFAULT_WARMUP = 20
_PROBE_TIMEOUT_S = 600


@dataclass(frozen=True)
class LatencyStats:
    """Latency of the timed runs in milliseconds, and the throughput they imply."""

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    throughput_per_s: float


@dataclass(frozen=True)
class MemoryStats:
    """Peak resident memory of a fresh process holding the session."""

    rss_before_session_bytes: int
    peak_rss_bytes: int
    session_rss_bytes: int
    method: str


@dataclass(frozen=True)
class ModelBench:
    """One model's file sizes, latency and memory, and the graph optimisation level its
    sessions were opened with (the one the file declares)."""

    path: str
    graph_optimization: str
    file_bytes: int
    xz_bytes: int | None
    sparse_initializers: int
    latency: LatencyStats
    memory: MemoryStats | None


@dataclass(frozen=True)
class BenchRatios:
    """candidate / baseline for each figure (< 1: the candidate is smaller or faster;
    for throughput > 1 is better)."""

    p50_latency: float
    p90_latency: float
    p99_latency: float
    throughput: float
    file_bytes: float
    xz_bytes: float | None
    peak_rss: float | None


@dataclass(frozen=True)
class Machine:
    cpu: str
    logical_cores: int | None
    physical_cores: int | None
    platform: str
    python: str


@dataclass(frozen=True)
class BenchResult:
    """A benchmark run, JSON-serialisable through `to_dict()`."""

    schema_version: int
    onnxruntime_version: str
    provider: str
    threads: int
    inter_op_threads: int
    graph_optimization: str  # the candidate's; each model's is in its ModelBench
    batch: int
    runs: int
    warmup: int
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    interleaved: bool
    timed: str
    candidate: ModelBench
    baseline: ModelBench | None
    ratios: BenchRatios | None
    machine: Machine

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


def benchmark(
    model: Path,
    *,
    against: Path | None = None,
    threads: int = 1,
    batch: int = 1,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    sample_shape: tuple[int, ...] | None = None,
    measure_memory: bool = True,
    seed: int = 0,
) -> BenchResult:
    """Benchmark `model` (and `against`, interleaved) with onnxruntime's CPU provider.

    Args:
        model: the candidate `.onnx` file (its sibling `model.onnx.xz` is reported if present).
        against: a baseline `.onnx` with the same input shape (typically the dense export).
        threads: onnxruntime intra-op threads (default 1: an edge device).
        batch: samples per run; the model needs a dynamic batch axis for batch > 1.
        runs: timed runs per model; warmup: untimed runs per model before them.
        sample_shape: one sample's shape; default: the model's `input_shape` metadata,
            else its graph input dims.
        measure_memory: also measure peak RSS in a fresh process per model (~1 s each).
        seed: seed of the random input batch.

    Raises:
        ExporterInputError: missing or non-ONNX file, input shapes that do not match, bad
            counts.
    """
    if runs < 1:
        raise ExporterInputError(f"runs must be >= 1 (got {runs})")
    if warmup < 0:
        raise ExporterInputError(f"warmup must be >= 0 (got {warmup})")
    model = Path(model)
    candidate_model = load_onnx(model, load_weights=False)
    if sample_shape is None:
        sample_shape = _metadata_sample_shape(candidate_model)
    session = open_session(model, threads=threads)
    spec = input_spec(session, label=str(model))
    shape = resolve_batch_shape(spec, batch, sample_shape, label=str(model))
    sessions = [session]
    specs = [spec]
    paths = [model]
    if against is not None:
        against = Path(against)
        baseline_session = open_session(against, threads=threads)
        baseline_spec = input_spec(baseline_session, label=str(against))
        try:
            resolve_batch_shape(baseline_spec, batch, shape[1:], label=str(against))
        except ExporterInputError:
            theirs = ", ".join("batch" if d is None else str(d) for d in baseline_spec.dims)
            raise ExporterInputError(
                f"input shape mismatch: {model} takes (batch, {', '.join(map(str, shape[1:]))}) but --against "
                f"{against} takes ({theirs}); compare models with the same input"
            ) from None
        if baseline_spec.element_type != spec.element_type:
            raise ExporterInputError(f"{model} takes {spec.element_type} but {against} takes {baseline_spec.element_type}")
        sessions.append(baseline_session)
        specs.append(baseline_spec)
        paths.append(against)

    rng = np.random.default_rng(seed)
    feed = rng.standard_normal(shape).astype(spec.numpy_dtype)
    samples_ns = _timed_runs(sessions, specs, feed, runs=runs, warmup=warmup)
    del sessions

    benches = []
    for path, timings in zip(paths, samples_ns):
        declared = declared_graph_optimization(load_onnx(path, load_weights=False))
        memory = _probe_memory(path, threads=threads, shape=shape, graph_optimization=declared) if measure_memory else None
        benches.append(_model_bench(path, timings, batch, memory))
    candidate, baseline = benches[0], (benches[1] if len(benches) > 1 else None)
    return BenchResult(
        schema_version=SCHEMA_VERSION,
        onnxruntime_version=ort.__version__,
        provider=PROVIDER,
        threads=threads,
        inter_op_threads=1,
        graph_optimization=candidate.graph_optimization,
        batch=batch,
        runs=runs,
        warmup=warmup,
        input_name=spec.name,
        input_shape=shape,
        input_dtype=spec.element_type,
        interleaved=baseline is not None,
        timed=(
            f"wall-clock time of one onnxruntime InferenceSession.run() call on a preallocated random "
            f"{spec.element_type} batch of shape {list(shape)}, {threads} intra-op thread(s), outputs as numpy; "
            f"{runs} timed runs per model after {warmup} untimed warm-up runs"
            + (", candidate and baseline interleaved in one process" if baseline is not None else "")
            + "; excludes process start, imports and session creation (model load, sparse initializer "
            "expansion, graph optimisation)"
        ),
        candidate=candidate,
        baseline=baseline,
        ratios=_ratios(candidate, baseline) if baseline is not None else None,
        machine=machine_info(),
    )


@dataclass(frozen=True)
class LatencyComparison:
    """Median latency of two models timed interleaved in one process (report-only).

    `ratio` is candidate / baseline (< 1: the candidate is faster). Each model ran under the
    graph optimisation level its file declares (`*_graph_optimization`).
    """

    batch: int
    threads: int
    runs: int
    candidate_median_ms: float
    baseline_median_ms: float
    ratio: float
    candidate_graph_optimization: str
    baseline_graph_optimization: str


def compare_latency(
    candidate: Path | bytes,
    baseline: Path | bytes,
    *,
    batch: int = 1,
    threads: int = 1,
    runs: int = 30,
    warmup: int = 5,
    seed: int = 0,
) -> LatencyComparison:
    """A short interleaved median of `candidate` against `baseline` (files or serialized
    bytes with the same input), each under its declared loading options.

    Meant for a report line such as "INT8 runs at 0.8x fp32 here", never for a decision: a
    few dozen runs on a shared machine are noisy, and the figure is the exporting host's.
    """
    if runs < 1:
        raise ExporterInputError(f"runs must be >= 1 (got {runs})")
    if warmup < 0:
        raise ExporterInputError(f"warmup must be >= 0 (got {warmup})")
    protos = [
        load_onnx(Path(m), load_weights=False) if isinstance(m, (str, Path)) else _parse(m) for m in (candidate, baseline)
    ]
    sessions = [open_session(m, threads=threads, label=name) for m, name in ((candidate, "the candidate"), (baseline, "the baseline"))]
    specs = [input_spec(session) for session in sessions]
    shape = resolve_batch_shape(specs[0], batch, _metadata_sample_shape(protos[0]))
    resolve_batch_shape(specs[1], batch, shape[1:], label="the baseline")
    feed = np.random.default_rng(seed).standard_normal(shape).astype(specs[0].numpy_dtype)
    timings = _timed_runs(sessions, specs, feed, runs=runs, warmup=warmup)
    cand_ms, base_ms = (float(np.median(np.asarray(t, dtype=np.float64))) / 1e6 for t in timings)
    return LatencyComparison(
        batch=batch,
        threads=threads,
        runs=runs,
        candidate_median_ms=cand_ms,
        baseline_median_ms=base_ms,
        ratio=cand_ms / base_ms,
        candidate_graph_optimization=loading_level(protos[0]),
        baseline_graph_optimization=loading_level(protos[1]),
    )


def _parse(data: bytes) -> Any:
    import onnx

    try:
        return onnx.load_from_string(bytes(data))
    except Exception as error:  # noqa: BLE001 - protobuf raises several unrelated types
        raise ExporterInputError(f"the model bytes are not ONNX ({type(error).__name__})") from None


def write_result(result: BenchResult, path: Path) -> Path:
    """Write `result` as JSON atomically (a crash never leaves a half-written bench.json)."""
    return atomic_write_json(Path(path), result.to_dict())


def default_result_path(model: Path) -> Path:
    """Where `prunectl bench` writes by default: `bench.json` beside the model, which for
    `runs/<name>/export/model.onnx` is the run directory's `export/bench.json`."""
    return Path(model).with_name("bench.json")


def machine_info() -> Machine:
    """CPU model and core counts: latency figures mean nothing without them."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - optional detail
        physical = None
    return Machine(
        cpu=cpu,
        logical_cores=os.cpu_count(),
        physical_cores=physical,
        platform=platform.platform(),
        python=platform.python_version(),
    )


def _metadata_sample_shape(model: Any) -> tuple[int, ...] | None:
    for entry in model.metadata_props:
        if entry.key == "input_shape":
            try:
                value = json.loads(entry.value)
            except json.JSONDecodeError:
                return None
            return tuple(int(v) for v in value) if isinstance(value, list) else None
    return None


def _timed_runs(sessions: list[Any], specs: list[InputSpec], feed: np.ndarray, *, runs: int, warmup: int) -> list[list[int]]:
    feeds = [{spec.name: feed} for spec in specs]
    order = list(range(len(sessions)))
    for i in range(warmup):
        for k in order if i % 2 == 0 else order[::-1]:
            sessions[k].run(None, feeds[k])
    timings: list[list[int]] = [[] for _ in sessions]
    clock = time.perf_counter_ns
    for i in range(runs):
        for k in order if i % 2 == 0 else order[::-1]:
            session, inputs = sessions[k], feeds[k]
            start = clock()
            session.run(None, inputs)
            timings[k].append(clock() - start)
    return timings


def _model_bench(path: Path, timings_ns: list[int], batch: int, memory: MemoryStats | None) -> ModelBench:
    ms = np.asarray(timings_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    latency = LatencyStats(
        runs=len(ms),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        throughput_per_s=batch * len(ms) / (float(ms.sum()) / 1e3),
    )
    xz = path.with_name(path.name + ".xz")
    proto = load_onnx(path, load_weights=False)
    return ModelBench(
        path=str(path),
        graph_optimization=loading_level(proto),
        file_bytes=path.stat().st_size,
        xz_bytes=xz.stat().st_size if xz.is_file() else None,
        sparse_initializers=len(proto.graph.sparse_initializer),
        latency=latency,
        memory=memory,
    )


def _ratios(candidate: ModelBench, baseline: ModelBench) -> BenchRatios:
    c, b = candidate, baseline
    return BenchRatios(
        p50_latency=c.latency.p50_ms / b.latency.p50_ms,
        p90_latency=c.latency.p90_ms / b.latency.p90_ms,
        p99_latency=c.latency.p99_ms / b.latency.p99_ms,
        throughput=c.latency.throughput_per_s / b.latency.throughput_per_s,
        file_bytes=c.file_bytes / b.file_bytes,
        xz_bytes=c.xz_bytes / b.xz_bytes if c.xz_bytes and b.xz_bytes else None,
        peak_rss=c.memory.peak_rss_bytes / b.memory.peak_rss_bytes if c.memory and b.memory else None,
    )


_MEMORY_METHOD = (
    "peak RSS (VmHWM on Linux) of a fresh Python process (python -m exporters._probe) that imports "
    f"numpy, onnxruntime and psutil, creates the session from the file and runs it {PROBE_RUNS} times; "
    "rss_before_session is its RSS after those imports"
)


def _probe_memory(path: Path, *, threads: int, shape: tuple[int, ...], graph_optimization: str | None = None) -> MemoryStats:
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    command = [
        sys.executable, "-m", "exporters._probe", str(path),
        "--threads", str(threads), "--shape", json.dumps(list(shape)),
    ]  # fmt: skip
    if graph_optimization is not None:
        command += ["--graph-optimization", graph_optimization]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=_PROBE_TIMEOUT_S, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise RuntimeError(f"memory probe for {path} failed: {tail}")
    values = json.loads(done.stdout.strip().splitlines()[-1])
    return MemoryStats(
        rss_before_session_bytes=values["rss_before"],
        peak_rss_bytes=values["peak_rss"],
        session_rss_bytes=max(0, values["peak_rss"] - values["rss_before"]),
        method=_MEMORY_METHOD,
    )
