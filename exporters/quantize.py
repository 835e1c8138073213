"""INT8 quantisation through onnxruntime's quantisation tools, the method chosen by the graph.

Which method, and why (never a timing race: the same model always gets the same method):

* **Models with convolutions → static QDQ.** `quantize_static` with `QuantFormat.QDQ`:
  QuantizeLinear/DequantizeLinear pairs around every Conv/Gemm, weights int8 per output
  channel and symmetric (zero point 0, so a pruned zero stays exactly 0), activations uint8
  with ranges from MinMax calibration over caller-supplied samples. onnxruntime fuses each
  DQ → Conv → Q into QLinearConv (and Gemm into QGemm) when it loads the file with its
  extended/all graph optimisations, which is why the INT8 file declares
  `x.session_graph_optimization = "all"`. Measured with `exporters.benchmark` (2 AMD EPYC
  cores, onnxruntime 1.32, 1 thread): the builtin CNN at 0.7-0.8x the fp32 latency at batch 1
  and 0.6-0.75x at batch 32 (across runs on a shared machine), resnet18 (3x32x32) at 0.50x and
  0.63x; dynamic quantisation (ConvInteger) had made the builtin CNN 4.8x / 9.3x *slower*.
  uint8 activations with int8 weights (U8S8) is onnxruntime's recommended x86 pairing; int8
  activations measured the same within noise here. `reduce_range` stays off: it costs a bit
  of precision and is only a guard against int16 saturation on x86 CPUs without VNNI.
* **Models without convolutions (MLPs) → dynamic.** `quantize_dynamic`, int8 symmetric
  weights, activations quantised at run time, no calibration. torch exports `nn.Linear` as
  Gemm, which onnxruntime 1.32's dynamic quantiser rewrites to MatMul and quantises
  (MatMulInteger); the report counts the quantised nodes so a version that stops doing so
  shows as `quantized_nodes == 0`.

Both methods first run onnxruntime's quantisation pre-processing (`quant_pre_process`: basic
graph optimisation and shape inference), without which torch's aliased initializers (Identity
nodes) leave convolutions unfusable; `quantized_nodes` in the report counts the weighted
nodes that will run as integer kernels, so a graph onnxruntime cannot fuse shows up there.

Calibration samples are the caller's (training members or dev samples; never the holdout the
gate measures on). They are run through onnxruntime's MinMax calibrator with a session of one
intra-op thread, so the ranges, and with them the file's bytes, do not depend on the host's
core count; the same fp32 model and calibration give byte-identical INT8 bytes.

The quantised model is compared with the fp32 ONNX model on the same inputs (report-only
parity: differences of quantisation size are expected) and, when labelled samples are given,
the caller sees the accuracy before and after, which is what decides whether INT8 is
acceptable. `input_scale`, the scale of the QuantizeLinear that quantises the graph input,
is reported because an input perturbation below it is rounded away by the model: a gate
measuring sensitivity must perturb by more.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from exporters._ort import SESSION_OPTIMIZATION_KEY, session_options
from exporters.errors import ExporterInputError, ParityError
from exporters.options import INT8_NAME, QuantizationMethod, SparseStorage
from exporters.parity import ParityReport, accuracy, compare_logits, run_session
from exporters.runtime import PROVIDER, open_session
from exporters.sparse import apply_sparse_storage

CONV_OPS = frozenset({"Conv", "ConvTranspose"})
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_INTEGER_OPS = frozenset({"ConvInteger", "MatMulInteger"})
_QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
_INT8_TYPES = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)

INT8_LOADING = "all"
"""The graph optimisation level an INT8 file declares: QDQ pairs only become integer kernels
through onnxruntime's load-time fusions (extended level and up; the basic level leaves
DQ → fp32 Conv → Q, about 1.9x slower than fp32)."""

CALIBRATION_BATCH = 32
CALIBRATION_THREADS = 1
MIN_QDQ_OPSET = 13  # per-channel DequantizeLinear (the `axis` attribute)


@dataclass(frozen=True)
class QuantizationReport:
    """The INT8 model and how it was made, against the fp32 ONNX model on the parity inputs.

    `method`/`reason`: which quantiser ran and why (chosen by the graph). `weighted_nodes`:
    Conv/Gemm/MatMul nodes of the fp32 graph; `quantized_nodes`: those that compute with int8
    weights in the INT8 graph. `input_scale`: the scale of the QuantizeLinear that quantises
    the graph input (static only; None for dynamic, which quantises inputs at run time).
    `session_graph_optimization`: the loading level the file declares.
    `accuracy_fp32`/`accuracy_int8` are None when no labels were given.
    """

    method: QuantizationMethod
    reason: str
    scheme: str
    weight_type: str
    activation_type: str
    per_channel: bool
    weighted_nodes: int
    quantized_nodes: int
    input_scale: float | None
    calibration_samples: int
    session_graph_optimization: str
    onnx_bytes: int
    parity: ParityReport
    accuracy_fp32: float | None
    accuracy_int8: float | None
    labelled_samples: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["method"] = self.method.value
        return out


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs an advisory through the root logger on every call."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def choose_method(model: onnx.ModelProto) -> tuple[QuantizationMethod, str]:
    """The INT8 method for a graph, and the reason in words: static QDQ for any convolution,
    dynamic otherwise."""
    ops = {node.op_type for node in model.graph.node}
    if ops & CONV_OPS:
        return QuantizationMethod.STATIC_QDQ, "static QDQ, per-channel: the model has convolutions"
    return QuantizationMethod.DYNAMIC, "dynamic, int8 weights: the model has no convolutions (linear layers only)"


def input_quantization_scale(model: onnx.ModelProto) -> float | None:
    """The scale of the QuantizeLinear that consumes the graph's (first) input, or None when
    no QuantizeLinear reads it with a constant scale (fp32 and dynamic models)."""
    if not model.graph.input:
        return None
    name = model.graph.input[0].name
    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = attribute.t
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input and node.input[0] == name and len(node.input) > 1:
            scale = constants.get(node.input[1])
            if scale is not None:
                return float(numpy_helper.to_array(scale).reshape(-1)[0])
    return None


def count_quantized_nodes(model: onnx.ModelProto) -> int:
    """Weighted nodes (Conv, Gemm, MatMul) that compute in int8.

    In a dynamic graph: the ConvInteger/MatMulInteger nodes. In a QDQ graph: the weighted
    nodes onnxruntime can fuse into an integer kernel, those whose data input comes from a
    DequantizeLinear, whose weight is a DequantizeLinear of an int8 initializer and whose
    bias, if any, a DequantizeLinear of an int32 initializer. A node short of that runs in
    fp32 between DequantizeLinear and QuantizeLinear, slower than the fp32 model.
    """
    graph = model.graph
    stored = {t.name: t.data_type for t in graph.initializer}
    stored.update({s.values.name: s.values.data_type for s in graph.sparse_initializer})
    dequantized = {node.output[0]: stored.get(node.input[0]) for node in graph.node if node.op_type == "DequantizeLinear"}
    count = 0
    for node in graph.node:
        if node.op_type in _INTEGER_OPS:
            count += 1
        elif node.op_type in WEIGHTED_OPS and len(node.input) >= 2:
            data, weight, bias = node.input[0], node.input[1], (node.input[2] if len(node.input) > 2 else "")
            if (
                data in dequantized
                and dequantized.get(weight) in _INT8_TYPES
                and (not bias or dequantized.get(bias) == onnx.TensorProto.INT32)
            ):
                count += 1
    return count


def has_quantization(model: onnx.ModelProto) -> bool:
    """Whether a graph already contains quantisation operators (QDQ or integer kernels)."""
    return any(node.op_type in _QUANT_OPS | _INTEGER_OPS or node.op_type.startswith("QLinear") for node in model.graph.node)


def quantize_int8(
    dense_fp32: onnx.ModelProto,
    *,
    inputs: np.ndarray,
    labels: np.ndarray | None = None,
    sparse: SparseStorage | str = SparseStorage.AUTO,
    calibration: Any = None,
) -> tuple[bytes, QuantizationReport]:
    """INT8-quantise a dense fp32 model; return the serialized model and its report.

    `calibration` ([N, *sample_shape] float32 array or CPU tensor; training members or dev
    samples, never the holdout) sets the activation ranges of a static QDQ model; it is
    required for models with convolutions and unused for the others. The INT8 bytes depend
    only on `dense_fp32`, `calibration` and `sparse`.
    `inputs` ([N, ...] float32) are run through both models; `labels`, if given, label the
    first len(labels) of them and enable the accuracy figures. Sparse storage is applied to
    the quantised model with the same per-tensor rule (int8 only pays below density 1/9).
    The graph's input and output stay float; metadata_props are carried over, plus
    `x.session_graph_optimization = "all"`.

    Raises:
        ExporterInputError: a conv model without calibration samples, calibration samples of
            the wrong shape or with non-finite values, an opset too old for per-channel QDQ.
        ParityError: the quantised model produces non-finite outputs.
    """
    if labels is not None and len(labels) > len(inputs):
        raise ExporterInputError(f"{len(labels)} labels for {len(inputs)} inputs; give at most one label per input")
    method, reason = choose_method(dense_fp32)
    samples = 0
    if method is QuantizationMethod.STATIC_QDQ:
        calibration = _calibration_array(dense_fp32, calibration)
        samples = len(calibration)
        opset = next((o.version for o in dense_fp32.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < MIN_QDQ_OPSET:
            raise ExporterInputError(
                f"static INT8 with per-channel weights needs opset >= {MIN_QDQ_OPSET} (the model has opset {opset}); "
                f"export with opset {MIN_QDQ_OPSET} or later"
            )

    with tempfile.TemporaryDirectory(prefix="exporters-int8-") as tmp, _quiet_root_logger():
        root = Path(tmp)
        # Paths, not protos: quantize_static saves a proto with external data *in place*.
        onnx.save(dense_fp32, str(root / "exported.onnx"))
        source = _prepare(root / "exported.onnx", root / "prepared.onnx")
        out_path = root / INT8_NAME
        if method is QuantizationMethod.STATIC_QDQ:
            _quantize_static(source, out_path, calibration, root)
        else:
            _quantize_dynamic(source, out_path)
        quantised = onnx.load(str(out_path))

    # The quantiser replaces the producer's metadata: carry it over, and declare the loading
    # options that keep the INT8 model fast.
    props = [(p.key, p.value) for p in dense_fp32.metadata_props if p.key != SESSION_OPTIMIZATION_KEY]
    del quantised.metadata_props[:]
    onnx.helper.set_model_props(quantised, dict([*props, (SESSION_OPTIMIZATION_KEY, INT8_LOADING)]))
    _check_float_interface(dense_fp32, quantised)
    quantized_nodes = count_quantized_nodes(quantised)
    input_scale = input_quantization_scale(quantised) if method is QuantizationMethod.STATIC_QDQ else None
    quantised, _ = apply_sparse_storage(quantised, sparse)
    onnx.checker.check_model(quantised)
    data = quantised.SerializeToString()

    fp32_logits = run_session(open_session(dense_fp32.SerializeToString(), label="the fp32 model"), inputs)
    int8_logits = run_session(open_session(data, label="the INT8 model"), inputs)
    parity = compare_logits(fp32_logits, int8_logits, tolerance=None)
    if not parity.finite:
        raise ParityError(f"INT8 quantisation produced non-finite logits: {parity.describe()}")
    n_labelled = 0 if labels is None else len(labels)
    acc_fp32 = acc_int8 = None
    if labels is not None and n_labelled:
        acc_fp32 = accuracy(fp32_logits[:n_labelled], labels)
        acc_int8 = accuracy(int8_logits[:n_labelled], labels)
    static = method is QuantizationMethod.STATIC_QDQ
    report = QuantizationReport(
        method=method,
        reason=reason if quantized_nodes else f"{reason}; no node was quantised",
        scheme=(
            "onnxruntime quantize_static, QDQ, per-channel symmetric int8 weights, uint8 activations, MinMax calibration"
            if static
            else "onnxruntime quantize_dynamic, per-tensor symmetric int8 weights, uint8 activations at run time"
        ),
        weight_type="int8",
        activation_type="uint8" if static else "uint8 (dynamic)",
        per_channel=static,
        weighted_nodes=sum(1 for node in dense_fp32.graph.node if node.op_type in WEIGHTED_OPS),
        quantized_nodes=quantized_nodes,
        input_scale=input_scale,
        calibration_samples=samples,
        session_graph_optimization=INT8_LOADING,
        onnx_bytes=len(data),
        parity=parity,
        accuracy_fp32=acc_fp32,
        accuracy_int8=acc_int8,
        labelled_samples=n_labelled,
    )
    return data, report


def _calibration_array(model: onnx.ModelProto, calibration: Any) -> np.ndarray:
    """The calibration samples as a C-contiguous float32 array, checked against the graph."""
    fix = "pass calibration_inputs: a few hundred training members or dev samples (never the holdout)"
    if calibration is None:
        raise ExporterInputError(f"INT8 quantisation of a model with convolutions is static and needs calibration samples; {fix}")
    if hasattr(calibration, "detach"):  # a torch tensor, without importing torch here
        calibration = calibration.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(calibration, dtype=np.float32))
    (graph_input,) = model.graph.input[:1]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph_input.type.tensor_type.shape.dim]
    if array.ndim == 0 or len(array) == 0:
        raise ExporterInputError(f"the calibration samples are empty; {fix}")
    if array.ndim != len(dims) or any(d is not None and d != s for d, s in zip(dims[1:], array.shape[1:])):
        expected = ", ".join("N" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(dims))
        raise ExporterInputError(
            f"calibration samples have shape ({', '.join(map(str, array.shape))}) but the model takes ({expected}); "
            "pass samples shaped like the parity inputs"
        )
    if not np.isfinite(array).all():
        raise ExporterInputError("the calibration samples contain NaN or infinite values; pass finite model inputs")
    return array


class _ArrayReader:
    """A CalibrationDataReader over an array, in fixed chunks (deterministic)."""

    def __init__(self, input_name: str, array: np.ndarray, batch: int = CALIBRATION_BATCH) -> None:
        self._feeds = [{input_name: array[i : i + batch]} for i in range(0, len(array), batch)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def __len__(self) -> int:
        return len(self._feeds)


def _prepare(exported: Path, prepared: Path) -> Path:
    """onnxruntime's pre-processing for quantisation: basic graph optimisation and ONNX shape
    inference (`quant_pre_process`; its symbolic shape inference, for transformers, is off).

    It matters for more than the warning it silences: torch stores identical initializers once
    and aliases them through Identity nodes (a randomly initialised resnet18's folded
    batch-norm biases are all zeros, and pruning makes identical tensors too); a Conv whose bias
    comes from an Identity is not a fusable QDQ unit, and onnxruntime left 16 of resnet18's 20
    Conv in fp32 between DequantizeLinear and QuantizeLinear: 2.2x slower than fp32 instead of
    0.45x. The basic level removes those Identity nodes.
    """
    from onnxruntime.quantization import quant_pre_process

    try:
        quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=True)
    except Exception as error:  # noqa: BLE001 - onnx and onnxruntime raise their own types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExporterInputError(f"onnxruntime's quantisation pre-processing cannot handle the model: {first_line}") from None
    # An optimisation failure is only logged; the fp32 graph then goes on unoptimised, and the
    # report's quantized_nodes shows the units onnxruntime cannot fuse.
    return prepared


def _quantize_static(source: Path, out_path: Path, calibration: np.ndarray, tmp: Path) -> None:
    """Calibrate with a one-thread session, then quantise from the cached ranges.

    quantize_static opens its calibration session with onnxruntime's default thread count
    and offers no option for it; it does accept a calibration cache and then skips its own
    calibration. So the ranges are computed here with the library's MinMax calibrator (the
    same operator types quantize_static calibrates), its session replaced by one with a
    single intra-op thread, saved as that cache, and quantize_static reads them back.
    """
    from onnxruntime import InferenceSession
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        create_calibrator,
        quantize_static,
        save_tensors_data,
    )
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    class Reader(_ArrayReader, CalibrationDataReader):
        """The array reader, registered as onnxruntime's reader type."""

    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(
        source,
        op_types,
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=CalibrationMethod.MinMax,
    )  # no max_intermediate_outputs: 1.32 drops the collected batches instead of merging them
    calibrator.infer_session = InferenceSession(
        calibrator.augmented_model_path,
        sess_options=session_options(CALIBRATION_THREADS, "disabled"),  # as the library: no graph optimisation
        providers=[PROVIDER],
    )
    calibrator.collect_data(Reader(input_name, calibration))
    cache = tmp / "calibration.json"
    save_tensors_data(calibrator.compute_data(), cache)
    del calibrator
    quantize_static(
        source,
        out_path,
        calibration_data_reader=None,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        calibration_cache_path=cache,
    )


def _quantize_dynamic(source: Path, out_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, out_path, weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True})


def _check_float_interface(fp32: onnx.ModelProto, int8: onnx.ModelProto) -> None:
    """The INT8 graph takes and returns what the fp32 graph does (float tensors)."""
    for side in ("input", "output"):
        before = [(v.name, v.type.tensor_type.elem_type) for v in getattr(fp32.graph, side)]
        after = [(v.name, v.type.tensor_type.elem_type) for v in getattr(int8.graph, side)]
        if before != after:
            raise ParityError(f"INT8 quantisation changed the graph {side}s from {before} to {after}; no file was written")
