"""Offline graph optimisation: optimise once at export, load with optimisation disabled.

onnxruntime optimises a graph every time it loads it, and holds the original and the
optimised graph (and their initializers) at the same time while doing so: loading resnet18
with its default optimisation peaked at about twice the RSS of loading a pre-optimised file
with optimisation disabled (208 MiB vs 104 MiB in the prototype). :func:`optimize_offline`
runs the *basic* level once (constant folding, redundant-node elimination and other
rewrites that only use standard ONNX operators), writes the result, and records in the
file's metadata that it is meant to be loaded with optimisation disabled
(`x.session_graph_optimization = "disabled"`), which `exporters.runtime.open_session`, the
benchmark and its memory probe honour.

Only the basic level is offered (:class:`exporters.options.Optimization`): the extended and
all levels write `com.microsoft` fused operators and layouts chosen for the exporting host's
CPU, which other runtimes and other CPUs may not read. The result is refused if it contains
any operator outside the standard ONNX domain anyway.

The trade: an offline-basic file loaded with optimisation disabled misses the load-time
fusions of the extended/all levels (Conv+activation fusion, NCHWc layouts), so it runs slower
than the same model loaded with full optimisation. Measured with `exporters.benchmark` (1
thread, 2 AMD EPYC cores, onnxruntime 1.32): resnet18 on 3x32x32 inputs peaked at 110 MiB
instead of 209 MiB but ran 1.9x slower at batch 1 and 3.2x at batch 32 (the prototype saw
1.10x on its inputs); the small builtin CNN gains nothing in memory (62 vs 63 MiB: its weights
are 1.7 MB) and runs 1.5-1.8x slower. It is a memory choice for large models, not a default.

Quantised models are refused: the basic level does not fuse QuantizeLinear/DequantizeLinear
pairs into QLinearConv/QGemm (that is an extended-level transform), so a QDQ model optimised
offline and loaded with optimisation disabled runs DequantizeLinear → fp32 Conv →
QuantizeLinear, measured at 1.9x the fp32 model's latency on the builtin CNN, where loaded
with full optimisation it runs at 0.6-0.85x. INT8 files ship unoptimised and declare the
"all" loading level instead (see :mod:`exporters.quantize`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

from exporters._ort import PROVIDER, SESSION_OPTIMIZATION_KEY, session_options
from exporters.errors import ExporterInputError
from exporters.options import Optimization
from exporters.quantize import has_quantization

OFFLINE_LOADING = "disabled"
"""The loading level an offline-optimised file declares."""

_STANDARD_DOMAINS = ("", "ai.onnx")


def optimize_offline(model_bytes: bytes, *, level: Optimization | str = Optimization.BASIC) -> bytes:
    """The model optimised offline at `level`, marked to be loaded with optimisation disabled.

    `level="none"` returns the bytes unchanged. The result passes `onnx.checker`, uses only
    standard ONNX operators (opset imports of unused domains, which onnxruntime adds, are
    dropped), keeps the input's metadata_props in order and adds
    `x.session_graph_optimization = "disabled"`. Sparse initializers come back dense (give
    the dense model and store the result sparse afterwards). Deterministic: the same bytes
    give the same bytes.

    Raises:
        ExporterInputError: an unknown level, bytes that are not an ONNX model, a quantised
            model (see the module docstring), a result with non-standard operators.
    """
    try:
        level = Optimization(level)
    except ValueError:
        allowed = ", ".join(member.value for member in Optimization)
        raise ExporterInputError(f"optimize must be one of {allowed} (got {level!r})") from None
    if level is Optimization.NONE:
        return bytes(model_bytes)
    try:
        source = onnx.load_from_string(bytes(model_bytes))
    except Exception as error:  # noqa: BLE001 - protobuf raises several unrelated types
        raise ExporterInputError(f"the model to optimise is not ONNX ({type(error).__name__}); pass serialized ONNX bytes") from None
    if has_quantization(source):
        raise ExporterInputError(
            "offline optimisation of a quantised model is refused: the basic level does not fuse QDQ into integer "
            "kernels and loading it with optimisation disabled is slower than fp32; ship the INT8 model unoptimised"
        )

    with tempfile.TemporaryDirectory(prefix="exporters-optimize-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        options = session_options(1, "basic")
        options.optimized_model_filepath = str(path)
        try:
            ort.InferenceSession(bytes(model_bytes), sess_options=options, providers=[PROVIDER])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ExporterInputError(f"onnxruntime cannot optimise the model: {first_line}") from None
        optimized = onnx.load(str(path))

    foreign = sorted({f"{node.domain}:{node.op_type}" for node in optimized.graph.node if node.domain not in _STANDARD_DOMAINS})
    if foreign:
        raise ExporterInputError(
            f"offline optimisation produced non-standard operators ({', '.join(foreign)}); export with optimize='none'"
        )
    used = {node.domain for node in optimized.graph.node} | {""}
    kept = [entry for entry in optimized.opset_import if entry.domain in used]
    del optimized.opset_import[:]
    optimized.opset_import.extend(kept)
    props = [(p.key, p.value) for p in source.metadata_props if p.key != SESSION_OPTIMIZATION_KEY]
    del optimized.metadata_props[:]
    onnx.helper.set_model_props(optimized, dict([*props, (SESSION_OPTIMIZATION_KEY, OFFLINE_LOADING)]))
    try:
        onnx.checker.check_model(optimized)
    except onnx.checker.ValidationError as error:
        raise ExporterInputError(f"the offline-optimised model fails onnx.checker: {error}; export with optimize='none'") from None
    return optimized.SerializeToString()
