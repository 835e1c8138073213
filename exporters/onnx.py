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
* `model.int8.onnx` — with `quantize="int8"` only.
* `model.dense.onnx` — with `keep_dense=True` only: the same model with dense storage, a
  baseline for `prunectl bench --against`.
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

from exporters.atomic import atomic_write_bytes
from exporters.compress import compress_xz
from exporters.errors import ExporterInputError, ParityError
from exporters.metadata import ExportMetadata, write_metadata
from exporters.parity import ParityReport, accuracy, compare_logits, run_session
from exporters.options import DEFAULT_OPSET, INT8_NAME, ONNX_NAME, OPSET_RANGE, XZ_NAME, Quantization, SparseStorage
from exporters.quantize import QuantizationReport, quantize_int8
from exporters.runtime import open_session
from exporters.sparse import TensorStorage, apply_sparse_storage, parameter_reference_bytes

MIN_OPSET = OPSET_RANGE[0]
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"

DENSE_NAME = "model.dense.onnx"


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
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
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
        quantize: "none" or "int8" (onnxruntime dynamic quantisation, report-only parity).
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

    frozen = copy.deepcopy(model).to("cpu").eval()
    example = example_input.detach().to("cpu", torch.float32)
    dense = _torch_to_onnx(frozen, example, opset)
    metadata = replace(metadata, input_shape=sample_shape, opset=opset)

    inputs = _parity_batch(parity_inputs, sample_shape, random_inputs, seed)
    reference = _torch_logits(frozen, inputs)
    if reference.ndim != 2:
        raise ExporterInputError(f"the model returns shape {tuple(reference.shape)}; a classifier must return [batch, classes] logits")
    if metadata.class_names and len(metadata.class_names) != reference.shape[1]:
        raise ExporterInputError(
            f"metadata names {len(metadata.class_names)} classes but the model returns {reference.shape[1]} logits"
        )
    write_metadata(dense, metadata)
    onnx.checker.check_model(dense, full_check=True)

    stored, tensors = apply_sparse_storage(dense, sparse)
    # onnx's shape inference does not type sparse initializers (it reports them as
    # sparse_tensor inputs of dense ops), so the full check ran on the dense twin above and
    # the sparse file gets the structural check; onnxruntime then loads and runs it below.
    onnx.checker.check_model(stored)
    dense_bytes = dense.SerializeToString()
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
    if quantize is Quantization.INT8:
        int8_bytes, quant_report = quantize_int8(dense, inputs=inputs, labels=labels, sparse=sparse)

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
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
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
    out_dir: Path,
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
    if out_dir.exists() and not out_dir.is_dir():
        raise ExporterInputError(f"{out_dir} exists and is not a directory; pass a directory for the export")
    return sample_shape


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
