"""Sparse storage of pruned weights as ONNX `sparse_initializer`s (COO).

**A size format, not a speed format.** onnxruntime expands every sparse initializer into a
dense tensor when it loads the model, and runs the usual dense kernels: a sparse-stored model
is exactly as fast, and takes as much memory once loaded, as the dense one. What sparse
storage buys is a smaller `model.onnx` on disk and over the wire.

Layout. Each sparse tensor stores its nonzero values ([NNZ], the tensor's own dtype) and
their *linearised* positions ([NNZ] int64, ascending), the second of the two index layouts
the ONNX spec allows. That costs `itemsize + 8` bytes per nonzero instead of `itemsize` per
element (the `[NNZ, rank]` layout would cost `itemsize + 8·rank`), so for fp32 it only pays
below a density of 4 / 12 = 1/3; the decision is taken per tensor, and tensors where it does
not pay stay dense. int64 is what `onnx.checker` requires for indices (onnxruntime would read
int32, but an artifact that fails the checker is not one we ship); ascending int64 positions
compress well with xz anyway.

Information reference size. For a tensor of n elements with nnz nonzeros of b bits each, an
ideal code needs about `nnz·b + n·H(nnz/n)` bits (values, plus which positions are nonzero,
H being the binary entropy). It is a yardstick for how much a storage format wastes, not a
floor: real weights are not uniform random bits, and a compressor can beat it slightly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from exporters.errors import ExporterInputError
from exporters.options import SparseStorage

INDEX_BYTES = 8  # int64 linear positions

# Element types whose zeros sparse storage can drop (the ONNX default value of a sparse
# tensor is 0, so a quantised tensor with a nonzero zero-point simply stays dense).
_STORABLE = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
}


@dataclass(frozen=True)
class TensorStorage:
    """One initializer: its density and how it is stored, with the byte counts behind the
    decision (payload bytes only; protobuf framing adds a few bytes per tensor)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nnz: int
    density: float
    storage: str  # "dense" | "sparse"
    dense_bytes: int
    stored_bytes: int


def binary_entropy(p: float) -> float:
    """H(p) in bits; 0 at p in {0, 1}."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def reference_bits(numel: int, nnz: int, value_bits: int) -> float:
    """nnz·value_bits + numel·H(nnz/numel): the information reference size of one tensor."""
    if numel == 0:
        return 0.0
    return nnz * value_bits + numel * binary_entropy(nnz / numel)


def sparse_pays(numel: int, nnz: int, itemsize: int) -> bool:
    """COO with int64 linear indices is smaller than the dense payload."""
    return nnz * (itemsize + INDEX_BYTES) < numel * itemsize


def _to_sparse(tensor: onnx.TensorProto, array: np.ndarray) -> onnx.SparseTensorProto:
    flat = array.reshape(-1)
    positions = np.flatnonzero(flat)
    values = numpy_helper.from_array(np.ascontiguousarray(flat[positions]), tensor.name)
    indices = numpy_helper.from_array(positions.astype(np.int64), "")
    return onnx.helper.make_sparse_tensor(values, indices, list(array.shape))


def apply_sparse_storage(
    model: onnx.ModelProto, mode: SparseStorage | str = SparseStorage.AUTO
) -> tuple[onnx.ModelProto, tuple[TensorStorage, ...]]:
    """A copy of `model` whose initializers are stored sparse where that is smaller.

    Only top-level initializers that are not also graph inputs are considered (a sparse
    initializer cannot be overridden by a feed). The input proto is not modified.
    Returns the new model and one TensorStorage per storable initializer, in graph order.
    """
    try:
        mode = SparseStorage(mode)
    except ValueError:
        allowed = ", ".join(m.value for m in SparseStorage)
        raise ExporterInputError(f"sparse storage must be one of {allowed} (got {mode!r})") from None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    if graph.sparse_initializer:
        raise ExporterInputError("the model already has sparse initializers; pass the dense export")
    graph_inputs = {value.name for value in graph.input}
    kept: list[onnx.TensorProto] = []
    sparse: list[onnx.SparseTensorProto] = []
    report: list[TensorStorage] = []
    for tensor in graph.initializer:
        if tensor.data_type not in _STORABLE or tensor.name in graph_inputs or len(tensor.dims) == 0:
            kept.append(tensor)
            continue
        array = numpy_helper.to_array(tensor)
        numel = int(array.size)
        nnz = int(np.count_nonzero(array))
        itemsize = array.dtype.itemsize
        to_sparse = mode is SparseStorage.AUTO and sparse_pays(numel, nnz, itemsize)
        if to_sparse:
            sparse.append(_to_sparse(tensor, array))
        else:
            kept.append(tensor)
        report.append(
            TensorStorage(
                name=tensor.name,
                shape=tuple(int(d) for d in array.shape),
                dtype=str(array.dtype),
                numel=numel,
                nnz=nnz,
                density=nnz / numel if numel else 0.0,
                storage="sparse" if to_sparse else "dense",
                dense_bytes=numel * itemsize,
                stored_bytes=nnz * (itemsize + INDEX_BYTES) if to_sparse else numel * itemsize,
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.sparse_initializer.extend(sparse)
    return out, tuple(report)


def parameter_reference_bytes(tensors: tuple[TensorStorage, ...]) -> float:
    """The information reference size, in bytes, summed per tensor over float parameters
    (integer tensors such as shapes are graph structure, not parameters)."""
    bits = 0.0
    for tensor in tensors:
        if tensor.dtype in ("float32", "float64", "float16"):
            value_bits = 8 * (tensor.dense_bytes // tensor.numel) if tensor.numel else 0
            bits += reference_bits(tensor.numel, tensor.nnz, value_bits)
    return bits / 8.0
