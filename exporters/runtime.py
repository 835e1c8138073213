"""Loading ONNX files and opening onnxruntime sessions, with user-facing errors.

Every place that takes a path from the user goes through :func:`load_onnx` /
:func:`open_session`, so a missing file, a file that is not ONNX or a model onnxruntime
cannot load all become one-line :class:`ExporterInputError` messages (exit code 2).

:func:`open_session` loads a model under the graph optimisation level the file declares in
its metadata (`x.session_graph_optimization`, see :mod:`exporters._ort`): an offline-optimised
file is loaded with optimisation disabled, every other file with onnxruntime's full
optimisation, so parity checks, the benchmark and any caller run the file as it ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from exporters._ort import PROVIDER, SESSION_OPTIMIZATION_KEY, graph_level_name, session_options
from exporters.errors import ExporterInputError

__all__ = [
    "PROVIDER",
    "InputSpec",
    "declared_graph_optimization",
    "input_spec",
    "load_onnx",
    "loading_level",
    "open_session",
    "resolve_batch_shape",
    "session_options",
]

# onnxruntime's element type strings → numpy dtypes we can synthesise inputs for.
_ORT_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}


def load_onnx(path: Path, *, load_weights: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file, or raise ExporterInputError saying what is wrong with it.

    A protobuf parser accepts many byte strings (an empty file parses as an empty model), so
    a file only counts as ONNX when it also has an IR version, an opset and a graph with
    inputs, outputs and nodes.
    """
    path = Path(path)
    if not path.exists():
        raise ExporterInputError(f"no such file: {path}; pass the path of an .onnx model")
    if not path.is_file():
        raise ExporterInputError(f"{path} is not a file; pass the path of an .onnx model")
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except Exception as error:  # noqa: BLE001 - protobuf raises several unrelated types
        raise ExporterInputError(
            f"{path} is not an ONNX model ({type(error).__name__}); pass a file written by an ONNX exporter"
        ) from None
    graph = model.graph
    if model.ir_version <= 0 or not model.opset_import or not graph.node or not graph.input or not graph.output:
        raise ExporterInputError(f"{path} is not an ONNX model (no graph in it); pass a file written by an ONNX exporter")
    return model


def declared_graph_optimization(model: onnx.ModelProto) -> str | None:
    """The graph optimisation level `model` declares it is meant to be loaded with
    ("disabled", "basic", "extended", "all"), or None when it declares none (the default)."""
    for entry in model.metadata_props:
        if entry.key == SESSION_OPTIMIZATION_KEY:
            graph_level_name(entry.value)  # an unknown value is refused here, not at load
            return entry.value
    return None


def loading_level(model: onnx.ModelProto) -> str:
    """The onnxruntime GraphOptimizationLevel name a session for `model` is opened with."""
    return graph_level_name(declared_graph_optimization(model))


def open_session(model: Path | str | bytes, *, threads: int = 1, label: str | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session for a file or serialized bytes, under the graph
    optimisation level the model declares (:func:`declared_graph_optimization`; default:
    all optimisations).

    Sparse initializers are expanded to dense tensors here, at load: sparse storage saves
    bytes on disk and on the wire, never time or memory at inference.
    """
    if isinstance(model, (str, Path)):
        model = Path(model)
        proto = load_onnx(model, load_weights=False)  # clear errors before onnxruntime's long ones
        source: str | bytes = str(model)
        label = label or str(model)
    else:
        source = model
        label = label or "the model"
        try:
            proto = onnx.load_from_string(model)
        except Exception:  # noqa: BLE001 - not ONNX: onnxruntime's error below names it
            proto = None
    declared = declared_graph_optimization(proto) if proto is not None else None
    del proto
    try:
        options = session_options(threads, declared)
        return ort.InferenceSession(source, sess_options=options, providers=[PROVIDER])
    except ExporterInputError:
        raise
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExporterInputError(f"onnxruntime cannot load {label}: {first_line}") from None


@dataclass(frozen=True)
class InputSpec:
    """The single input of a classifier: its name, element type and dims (None = symbolic)."""

    name: str
    element_type: str
    dims: tuple[int | None, ...]

    @property
    def numpy_dtype(self) -> type[np.generic]:
        return _ORT_TYPES[self.element_type]


def input_spec(session: ort.InferenceSession, *, label: str = "the model") -> InputSpec:
    """Describe the model's only input; classifiers with several inputs are refused."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ExporterInputError(f"{label} has {len(inputs)} inputs ({names}); only single-input classifiers are supported")
    (first,) = inputs
    if first.type not in _ORT_TYPES:
        raise ExporterInputError(
            f"{label} takes {first.type}; only float inputs ({', '.join(_ORT_TYPES)}) are supported"
        )
    dims = tuple(d if isinstance(d, int) and d > 0 else None for d in first.shape)
    return InputSpec(name=first.name, element_type=first.type, dims=dims)


def resolve_batch_shape(
    spec: InputSpec, batch: int, sample_shape: tuple[int, ...] | None, *, label: str = "the model"
) -> tuple[int, ...]:
    """The concrete input shape [batch, *sample] for a model, or ExporterInputError.

    `sample_shape` (one sample, without batch) comes from the caller or the model's
    metadata; it must agree with every fixed dim of the graph input, and it is required
    when a non-batch dim is symbolic.
    """
    if batch < 1:
        raise ExporterInputError(f"batch must be >= 1 (got {batch})")
    if not spec.dims:
        raise ExporterInputError(f"{label} takes a scalar input; a batch axis is required")
    batch_dim, *rest = spec.dims
    if batch_dim is not None and batch_dim != batch:
        raise ExporterInputError(
            f"{label} has a fixed batch size of {batch_dim}, not {batch}; use --batch {batch_dim} or export with a dynamic batch axis"
        )
    if sample_shape is not None:
        sample_shape = tuple(int(d) for d in sample_shape)
        if len(sample_shape) != len(rest) or any(d is not None and d != s for d, s in zip(rest, sample_shape)):
            graph = ["batch" if batch_dim is None else str(batch_dim)] + ["?" if d is None else str(d) for d in rest]
            raise ExporterInputError(
                f"input shape mismatch: {label} takes ({', '.join(graph)}) but the given sample shape is {_shape(sample_shape)}"
            )
        return (batch, *sample_shape)
    if any(d is None for d in rest):
        raise ExporterInputError(
            f"{label} has symbolic input dims ({', '.join('?' if d is None else str(d) for d in rest)}) and no input_shape metadata; give the sample shape"
        )
    return (batch, *(int(d) for d in rest))  # type: ignore[arg-type]


def _shape(dims: tuple[int, ...]) -> str:
    """Shapes in messages use parentheses: the CLI prints messages through rich, which would
    take `[batch, 1, 28, 28]` for a markup tag and drop it."""
    return "(" + ", ".join(str(d) for d in dims) + ")"
