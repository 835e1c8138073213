"""ONNX export of a (pruned) classifier: the release artifact and the evidence it is right.

Entry point: :func:`export_model`. It deep-copies the model (the caller's model is never
touched), exports it, stores the metadata a device needs, stores pruned weights sparse where
that is smaller, checks the file with `onnx.checker`, runs the same inputs through torch and
onnxruntime and raises :class:`ParityError` when they disagree, writes the deterministic
`model.onnx.xz` distribution artifact, optionally an INT8 model, and only then writes the
files (atomically). A failed check therefore leaves no new `model.onnx` behind.

Exporter choice: the TorchScript-based `torch.onnx.export(..., dynamo=False)`. It produces
byte-identical files for the same weights (the `.xz` artifact and its hash are reproducible),
takes a fraction of a second instead of seconds, honours `dynamic_axes` for the batch axis,
and names initializers after the PyTorch parameters (`features.0.weight`), so the per-tensor
storage report reads like the state dict. torch marks it deprecated; that DeprecationWarning
is silenced for the duration of the call only, because it is about torch's roadmap, not
about anything the user can act on.

Files written into `out_dir`:

* `model.onnx` — the model, sparse initializers where they pay (a *size* format:
  onnxruntime densifies them at load, so latency and loaded memory equal the dense model's).
* `model.onnx.xz` — xz of `model.onnx`, byte-exact round trip, deterministic.
* `model.int8.onnx` — with `quantize="int8"` only: static QDQ for models with convolutions
  (calibrated on `calibration_inputs`), dynamic for the others; see :mod:`exporters.quantize`.
  It declares the loading options that keep it fast (`x.session_graph_optimization = "all"`).
* `model.dense.onnx` — with `keep_dense=True` only: the same model with dense storage, a
  baseline for `prunectl bench --against`.

With `optimize="basic"` the fp32 `model.onnx` (and `model.dense.onnx`) is optimised offline at
onnxruntime's basic level and declares `x.session_graph_optimization = "disabled"`, which
roughly halves the peak memory of loading it (see :mod:`exporters.optimize`); the INT8 file
is left unoptimised, because the basic level does not fuse QDQ into integer kernels.

:func:`quantized_classifier` is the in-memory path for a caller that needs only the INT8
model (a gate auditing what ships): the same fp32 graph as :func:`export_model`, the same
quantiser, so its bytes equal the `model.int8.onnx` that `export_model` writes for the same
model, metadata, calibration and storage.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from exporters._ort import SESSION_OPTIMIZATION_KEY, graph_level_name
from exporters.atomic import atomic_write_bytes
from exporters.bench import compare_latency
from exporters.compress import compress_xz
from exporters.errors import ExporterInputError, ParityError
from exporters.metadata import ExportMetadata, write_metadata
from exporters.optimize import OFFLINE_LOADING, optimize_offline
from exporters.options import (
    DEFAULT_OPSET,
    INT8_NAME,
    ONNX_NAME,
    OPSET_RANGE,
    XZ_NAME,
    Optimization,
    Quantization,
    SparseStorage,
)
from exporters.ort_module import OnnxClassifier
from exporters.parity import ParityReport, accuracy, compare_logits, run_session
from exporters.quantize import INT8_LOADING, QuantizationReport, quantize_int8
from exporters.runtime import loading_level, open_session
from exporters.sparse import TensorStorage, apply_sparse_storage, parameter_reference_bytes

MIN_OPSET = OPSET_RANGE[0]
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"

DENSE_NAME = "model.dense.onnx"

LATENCY_RUNS = 30  # per model, interleaved, batch 1, 1 thread: a report line, not a benchmark
_SESSION_EXTRA = SESSION_OPTIMIZATION_KEY.removeprefix("x.")  # the same key as ExportMetadata.extra spells it


@dataclass(frozen=True)
class SizeReport:
    """Bytes of each format and their ratios.

    `dense_onnx_bytes` is the same model stored with dense initializers (what a plain
    export would write); `reference_bytes` the information reference size of its float
    parameters (nnz·32 + n·H(density) bits, per tensor): a yardstick, not a floor.
    """

    parameters: int
    nonzero_parameters: int
    sparsity: float
    sparse_tensors: int
    dense_onnx_bytes: int
    onnx_bytes: int
    xz_bytes: int
    reference_bytes: float
    onnx_to_dense: float
    xz_to_dense: float
    reference_to_dense: float
    onnx_to_reference: float
    xz_to_reference: float


@dataclass(frozen=True)
class AccuracyReport:
    """Top-1 accuracy on the labelled parity samples, in torch and in onnxruntime."""

    samples: int
    torch: float
    onnx: float


@dataclass(frozen=True)
class OptimizationReport:
    """The offline optimisation applied and the options each file is meant to be loaded with.

    `fp32_graph_optimization`/`int8_graph_optimization`: onnxruntime GraphOptimizationLevel
    names the files declare (what `open_session`, the benchmark and parity use);
    `int8_optimized` is False whenever an INT8 file exists (see `note`), None without one.
    """

    level: str
    fp32_graph_optimization: str
    int8_optimized: bool | None
    int8_graph_optimization: str | None
    note: str


@dataclass(frozen=True)
class Int8Latency:
    """INT8 against fp32: medians of a short interleaved run, each file under the session
    options it ships with. Report-only: it never decides anything."""

    batch: int
    threads: int
    runs: int
    fp32_median_ms: float
    int8_median_ms: float
    int8_to_fp32: float
    int8_slower_than_fp32: bool
    fp32_graph_optimization: str
    int8_graph_optimization: str


@dataclass(frozen=True)
class ExportReport:
    """Everything :func:`export_model` did: files, sizes, per-tensor storage, parity.

    `to_dict()` gives a JSON-serialisable dict (paths as strings).
    """

    onnx_path: Path
    xz_path: Path
    int8_path: Path | None
    dense_path: Path | None
    exporter: str
    opset: int
    input_name: str
    output_name: str
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    metadata: ExportMetadata
    sizes: SizeReport
    tensors: tuple[TensorStorage, ...]
    parity: ParityReport
    accuracy: AccuracyReport | None
    quantization: QuantizationReport | None
    int8_latency: Int8Latency | None
    optimization: OptimizationReport
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.quantization is not None:
            out["quantization"] = self.quantization.to_dict()
        for key in ("onnx_path", "xz_path", "int8_path", "dense_path"):
            out[key] = None if out[key] is None else str(out[key])
        out["metadata"] = self.metadata.to_dict()
        out["input_shape"] = list(self.input_shape)
        out["output_shape"] = list(self.output_shape)
        out["tensors"] = [dict(asdict(t), shape=list(t.shape)) for t in self.tensors]
        return out


def export_model(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    out_dir: Path,
    *,
    metadata: ExportMetadata,
    parity_inputs: torch.Tensor,
    parity_labels: torch.Tensor | None = None,
    random_inputs: int = 16,
    tolerance: float = 1e-4,
    opset: int = DEFAULT_OPSET,
    sparse: SparseStorage | str = SparseStorage.AUTO,
    quantize: Quantization | str = Quantization.NONE,
    calibration_inputs: Any = None,
    optimize: Optimization | str = Optimization.NONE,
    keep_dense: bool = False,
    seed: int = 0,
) -> ExportReport:
    """Export a classifier to `out_dir/model.onnx` (+ `.xz`), checked for parity with torch.

    Args:
        model: the classifier; deep-copied, put in eval mode and moved to the CPU; the
            caller's module, its parameters and its train/eval mode are left as they were.
        example_input: one batch [B, *sample_shape] fixing the input's rank and sample
            shape; the batch axis is exported as dynamic.
        out_dir: directory for the files (created; files in it are replaced atomically).
        metadata: class names and preprocessing to store in the file; `input_shape` and
            `opset` are filled in from the export when left None.
        parity_inputs: real samples [N, *sample_shape] (e.g. from the holdout split) run
            through torch and onnxruntime.
        parity_labels: [N] integer labels for `parity_inputs`; enables the accuracy report
            (torch vs ONNX, and fp32 vs INT8 with `quantize="int8"`).
        random_inputs: seeded standard-normal inputs appended to the parity batch, so
            parity is also checked off the data distribution.
        tolerance: allowed max absolute logit difference (argmax flips are only tolerated
            where the torch logits' top two are within 2·tolerance).
        opset: default-domain ONNX opset.
        sparse: "auto" (sparse initializers where smaller, decided per tensor) or "dense".
        quantize: "none" or "int8": `model.int8.onnx` beside the fp32 file, static QDQ for
            models with convolutions, dynamic for the others (report-only parity, accuracy
            and latency against fp32).
        calibration_inputs: [N, *sample_shape] float samples that set a static INT8 model's
            activation ranges: training members or dev samples, never the holdout (the gate
            measures on it). Required with quantize="int8" for models with convolutions.
        optimize: "none" or "basic": optimise the fp32 file offline and mark it to be
            loaded with graph optimisation disabled (lower peak memory at load).
        keep_dense: also write `model.dense.onnx` (dense storage) as a bench baseline.
        seed: seed of the random parity inputs.

    Raises:
        ExporterInputError: inputs that do not fit the model or each other, a bad option, a
            model torch cannot export.
        ParityError: onnxruntime's logits differ from torch's beyond the tolerance.
    """
    out_dir = Path(out_dir)
    sample_shape = _check_inputs(example_input, parity_inputs, parity_labels, metadata, tolerance, opset, random_inputs, out_dir)
    sparse = _enum(SparseStorage, sparse, "sparse")
    quantize = _enum(Quantization, quantize, "quantize")
    optimize = _enum(Optimization, optimize, "optimize")
    _check_calibration(calibration_inputs, sample_shape)

    frozen, dense, metadata = _fp32_graph(model, example_input, metadata, sample_shape, opset)

    inputs = _parity_batch(parity_inputs, sample_shape, random_inputs, seed)
    reference = _torch_logits(frozen, inputs)
    if reference.ndim != 2:
        raise ExporterInputError(f"the model returns shape {tuple(reference.shape)}; a classifier must return [batch, classes] logits")
    if metadata.class_names and len(metadata.class_names) != reference.shape[1]:
        raise ExporterInputError(
            f"metadata names {len(metadata.class_names)} classes but the model returns {reference.shape[1]} logits"
        )

    shipped = dense
    if optimize is Optimization.BASIC:
        shipped = onnx.load_from_string(optimize_offline(dense.SerializeToString(), level=optimize))
        metadata = replace(metadata, extra={**metadata.extra, _SESSION_EXTRA: OFFLINE_LOADING})
    stored, tensors = apply_sparse_storage(shipped, sparse)
    # onnx's shape inference does not type sparse initializers (it reports them as
    # sparse_tensor inputs of dense ops), so the full check ran on the dense twin (in
    # _fp32_graph, and optimize_offline's check) and the sparse file gets the structural
    # check; onnxruntime then loads and runs it below.
    onnx.checker.check_model(stored)
    dense_bytes = shipped.SerializeToString()
    model_bytes = stored.SerializeToString()

    candidate = run_session(open_session(model_bytes, label="the exported model"), inputs)
    parity = compare_logits(reference, candidate, tolerance)
    if not parity.passed:
        raise ParityError(f"onnxruntime disagrees with torch: {parity.describe()}; no file was written")

    labels = None if parity_labels is None else parity_labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
    acc = None
    if labels is not None and len(labels):
        n = len(labels)
        acc = AccuracyReport(samples=n, torch=accuracy(reference[:n], labels), onnx=accuracy(candidate[:n], labels))

    int8_bytes = None
    quant_report = None
    int8_latency = None
    if quantize is Quantization.INT8:
        # From the unoptimised fp32 graph, as quantized_classifier does: the same bytes.
        int8_bytes, quant_report = quantize_int8(dense, inputs=inputs, labels=labels, sparse=sparse, calibration=calibration_inputs)
        int8_latency = _int8_latency(int8_bytes, model_bytes)
    optimization = _optimization_report(optimize, stored, int8_bytes is not None)

    xz_bytes = compress_xz(model_bytes)
    sizes = _sizes(tensors, len(dense_bytes), len(model_bytes), len(xz_bytes))

    onnx_path = atomic_write_bytes(out_dir / ONNX_NAME, model_bytes)
    xz_path = atomic_write_bytes(out_dir / XZ_NAME, xz_bytes)
    int8_path = atomic_write_bytes(out_dir / INT8_NAME, int8_bytes) if int8_bytes is not None else None
    dense_path = atomic_write_bytes(out_dir / DENSE_NAME, dense_bytes) if keep_dense else None
    for stale_name, written in ((INT8_NAME, int8_path), (DENSE_NAME, dense_path)):
        if written is None:
            (out_dir / stale_name).unlink(missing_ok=True)  # never pair an old file with this export

    return ExportReport(
        onnx_path=onnx_path,
        xz_path=xz_path,
        int8_path=int8_path,
        dense_path=dense_path,
        exporter="torch.onnx.export (TorchScript, dynamo=False)",
        opset=opset,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_shape=(BATCH_AXIS, *sample_shape),
        output_shape=(BATCH_AXIS, int(reference.shape[1])),
        metadata=metadata,
        sizes=sizes,
        tensors=tensors,
        parity=parity,
        accuracy=acc,
        quantization=quant_report,
        int8_latency=int8_latency,
        optimization=optimization,
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
    )


def quantized_classifier(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    calibration: Any,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: ExportMetadata | None = None,
    sparse: SparseStorage | str = SparseStorage.AUTO,
    parity_inputs: torch.Tensor | None = None,
    parity_labels: torch.Tensor | None = None,
    threads: int = 1,
) -> tuple[OnnxClassifier, QuantizationReport]:
    """The INT8 model in memory, as an :class:`OnnxClassifier`, and its quantisation report.

    No files. The fp32 graph is exported exactly as :func:`export_model` exports it (same
    opset, dynamic batch axis, metadata, checks) and quantised by the same quantiser, so
    `classifier.onnx_bytes` equals the `model.int8.onnx` that `export_model` writes for the
    same model, `metadata`, `calibration` (its `calibration_inputs`) and `sparse`.

    Args:
        model: the classifier; deep-copied, put in eval mode and moved to the CPU.
        example_input: one batch [B, *sample_shape] fixing the input's rank and sample shape.
        calibration: [N, *sample_shape] float samples (training members or dev samples,
            never the holdout); required for models with convolutions, unused otherwise.
        opset, metadata, sparse: as for `export_model` (metadata defaults to empty).
        parity_inputs, parity_labels: inputs for the report-only fp32-vs-INT8 parity and
            accuracy; default: the calibration samples (or the example input), unlabelled.
        threads: intra-op threads of the classifier's session.

    Raises:
        ExporterInputError: as `export_model`, and a conv model without calibration samples.
    """
    metadata = ExportMetadata() if metadata is None else metadata
    sample_shape = _check_inputs(
        example_input, example_input if parity_inputs is None else parity_inputs, parity_labels, metadata, 1e-4, opset, 0, None
    )
    _check_calibration(calibration, sample_shape)
    _, dense, _ = _fp32_graph(model, example_input, metadata, sample_shape, opset)
    if parity_inputs is not None:
        probe = parity_inputs
    elif calibration is not None:
        probe = torch.as_tensor(_as_array(calibration))
    else:
        probe = example_input
    inputs = _parity_batch(probe, sample_shape, 0, 0)
    labels = None if parity_labels is None else parity_labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
    data, report = quantize_int8(dense, inputs=inputs, labels=labels, sparse=sparse, calibration=calibration)
    return OnnxClassifier(data, threads=threads), report


def _fp32_graph(
    model: torch.nn.Module, example_input: torch.Tensor, metadata: ExportMetadata, sample_shape: tuple[int, ...], opset: int
) -> tuple[torch.nn.Module, onnx.ModelProto, ExportMetadata]:
    """The frozen copy of the model, its dense fp32 ONNX graph with metadata (fully
    checked), and the metadata as stored: one path for export_model and quantized_classifier."""
    frozen = copy.deepcopy(model).to("cpu").eval()
    example = example_input.detach().to("cpu", torch.float32)
    dense = _torch_to_onnx(frozen, example, opset)
    metadata = replace(metadata, input_shape=sample_shape, opset=opset)
    write_metadata(dense, metadata)
    onnx.checker.check_model(dense, full_check=True)
    return frozen, dense, metadata


def _int8_latency(int8_bytes: bytes, fp32_bytes: bytes) -> Int8Latency:
    comparison = compare_latency(int8_bytes, fp32_bytes, batch=1, threads=1, runs=LATENCY_RUNS)
    return Int8Latency(
        batch=comparison.batch,
        threads=comparison.threads,
        runs=comparison.runs,
        fp32_median_ms=comparison.baseline_median_ms,
        int8_median_ms=comparison.candidate_median_ms,
        int8_to_fp32=comparison.ratio,
        int8_slower_than_fp32=comparison.ratio > 1.0,
        fp32_graph_optimization=comparison.baseline_graph_optimization,
        int8_graph_optimization=comparison.candidate_graph_optimization,
    )


def _optimization_report(optimize: Optimization, stored: onnx.ModelProto, has_int8: bool) -> OptimizationReport:
    note = ""
    if optimize is Optimization.BASIC:
        note = "fp32 optimised offline at the basic level, loaded with graph optimisation disabled"
        if has_int8:
            note += (
                "; INT8 left unoptimised: the basic level does not fuse QDQ into integer kernels, so it is loaded "
                f"with optimisation '{INT8_LOADING}'"
            )
    return OptimizationReport(
        level=optimize.value,
        fp32_graph_optimization=loading_level(stored),
        int8_optimized=False if has_int8 else None,
        int8_graph_optimization=graph_level_name(INT8_LOADING) if has_int8 else None,
        note=note,
    )


def _enum(kind: type, value: Any, field: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ExporterInputError(f"{field} must be one of {allowed} (got {value!r})") from None


def _check_inputs(
    example_input: Any,
    parity_inputs: Any,
    parity_labels: Any,
    metadata: ExportMetadata,
    tolerance: float,
    opset: int,
    random_inputs: int,
    out_dir: Path | None,
) -> tuple[int, ...]:
    """Validate everything before any work; return the per-sample input shape."""
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2 or example_input.shape[0] < 1:
        raise ExporterInputError("example_input must be a tensor [batch, *sample_shape] with at least one sample")
    sample_shape = tuple(int(d) for d in example_input.shape[1:])
    if metadata.input_shape is not None and tuple(metadata.input_shape) != sample_shape:
        raise ExporterInputError(
            f"input shape mismatch: metadata says {tuple(metadata.input_shape)} but the example input is {sample_shape}"
        )
    if not isinstance(parity_inputs, torch.Tensor) or tuple(parity_inputs.shape[1:]) != sample_shape:
        got = tuple(parity_inputs.shape) if isinstance(parity_inputs, torch.Tensor) else type(parity_inputs).__name__
        raise ExporterInputError(f"input shape mismatch: parity inputs are {got}, expected (N, {', '.join(map(str, sample_shape))})")
    if parity_labels is not None and (not isinstance(parity_labels, torch.Tensor) or parity_labels.reshape(-1).shape[0] != parity_inputs.shape[0]):
        raise ExporterInputError("parity_labels must be a tensor with one label per parity input")
    if parity_inputs.shape[0] + random_inputs < 1:
        raise ExporterInputError("parity needs at least one input: give parity_inputs or random_inputs > 0")
    if random_inputs < 0:
        raise ExporterInputError(f"random_inputs must be >= 0 (got {random_inputs})")
    if not (tolerance > 0 and np.isfinite(tolerance)):
        raise ExporterInputError(f"parity tolerance must be a positive number (got {tolerance})")
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ExporterInputError(f"opset must be in [{MIN_OPSET}, {newest}] (got {opset})")
    if _SESSION_EXTRA in metadata.extra:
        raise ExporterInputError(
            f"metadata extra key {_SESSION_EXTRA!r} is reserved for the exporter (the loading options it records); remove it"
        )
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ExporterInputError(f"{out_dir} exists and is not a directory; pass a directory for the export")
    return sample_shape


def _as_array(samples: Any) -> np.ndarray:
    if isinstance(samples, torch.Tensor):
        return samples.detach().to("cpu", torch.float32).numpy()
    return np.asarray(samples, dtype=np.float32)


def _check_calibration(calibration: Any, sample_shape: tuple[int, ...]) -> None:
    """Calibration samples, when given, are [N >= 1, *sample_shape] finite floats."""
    if calibration is None:
        return
    try:
        array = _as_array(calibration)
    except (TypeError, ValueError):
        raise ExporterInputError(f"calibration inputs must be a float tensor or array, not {type(calibration).__name__}") from None
    if array.ndim < 1 or len(array) == 0:
        raise ExporterInputError("the calibration inputs are empty; pass training members or dev samples (never the holdout)")
    if tuple(array.shape[1:]) != sample_shape:
        raise ExporterInputError(
            f"input shape mismatch: calibration inputs are ({', '.join(map(str, array.shape))}), "
            f"expected (N, {', '.join(map(str, sample_shape))})"
        )
    if not np.isfinite(array).all():
        raise ExporterInputError("the calibration inputs contain NaN or infinite values; pass finite model inputs")


def _torch_to_onnx(model: torch.nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
                do_constant_folding=True,
            )
    except Exception as error:  # noqa: BLE001 - torch raises many types for unexportable models
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExporterInputError(f"torch cannot export the model to ONNX opset {opset}: {first_line}") from None
    return onnx.load_from_string(buffer.getvalue())


def _parity_batch(parity_inputs: torch.Tensor, sample_shape: tuple[int, ...], random_inputs: int, seed: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((random_inputs, *sample_shape), generator=generator)
    batch = torch.cat([parity_inputs.detach().to("cpu", torch.float32), noise], dim=0)
    return np.ascontiguousarray(batch.numpy())


def _torch_logits(model: torch.nn.Module, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    chunks = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            output = model(torch.from_numpy(inputs[start : start + batch_size]))
            if not isinstance(output, torch.Tensor):
                raise ExporterInputError(f"the model returns {type(output).__name__}; a classifier must return one logits tensor")
            chunks.append(output.detach().float().numpy())
    return np.concatenate(chunks, axis=0)


def _sizes(tensors: tuple[TensorStorage, ...], dense_bytes: int, onnx_bytes: int, xz_bytes: int) -> SizeReport:
    params = [t for t in tensors if t.dtype in ("float32", "float64", "float16")]
    n = sum(t.numel for t in params)
    nnz = sum(t.nnz for t in params)
    reference = parameter_reference_bytes(tensors)
    safe_ref = reference if reference > 0 else float("nan")
    return SizeReport(
        parameters=n,
        nonzero_parameters=nnz,
        sparsity=1.0 - nnz / n if n else 0.0,
        sparse_tensors=sum(1 for t in tensors if t.storage == "sparse"),
        dense_onnx_bytes=dense_bytes,
        onnx_bytes=onnx_bytes,
        xz_bytes=xz_bytes,
        reference_bytes=reference,
        onnx_to_dense=onnx_bytes / dense_bytes,
        xz_to_dense=xz_bytes / dense_bytes,
        reference_to_dense=reference / dense_bytes,
        onnx_to_reference=onnx_bytes / safe_ref,
        xz_to_reference=xz_bytes / safe_ref,
    )
