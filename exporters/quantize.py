"""Optional INT8 dynamic quantisation through onnxruntime's quantisation tools.

Dynamic quantisation stores weights as int8 (symmetric, so a pruned zero stays exactly 0)
and quantises activations on the fly; it needs no calibration data. The quantised model is
compared with the fp32 ONNX model on the same inputs (a report-only parity: differences of
quantisation size are expected) and, when labelled samples are given, the caller sees the
accuracy before and after, which is what decides whether INT8 is acceptable.
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

from exporters.errors import ExporterInputError, ParityError
from exporters.options import INT8_NAME, Quantization, SparseStorage
from exporters.parity import ParityReport, accuracy, compare_logits, run_session
from exporters.runtime import open_session
from exporters.sparse import apply_sparse_storage


@dataclass(frozen=True)
class QuantizationReport:
    """The INT8 model against the fp32 ONNX model on the parity inputs.

    `accuracy_fp32`/`accuracy_int8` are None when no labels were given.
    """

    scheme: str
    weight_type: str
    onnx_bytes: int
    parity: ParityReport
    accuracy_fp32: float | None
    accuracy_int8: float | None
    labelled_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs an advisory through the root logger on every call."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def quantize_int8(
    dense_fp32: onnx.ModelProto,
    *,
    inputs: np.ndarray,
    labels: np.ndarray | None = None,
    sparse: SparseStorage | str = SparseStorage.AUTO,
) -> tuple[bytes, QuantizationReport]:
    """INT8-quantise a dense fp32 model; return the serialized model and its report.

    `inputs` ([N, ...] float32) are run through both models; `labels`, if given, label the
    first len(labels) of them and enable the accuracy figures. Sparse storage is applied to
    the quantised model with the same per-tensor rule (int8 only pays below density 1/9).
    Raises ParityError when the quantised model produces non-finite outputs.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if labels is not None and len(labels) > len(inputs):
        raise ExporterInputError(f"{len(labels)} labels for {len(inputs)} inputs; give at most one label per input")
    with tempfile.TemporaryDirectory(prefix="exporters-int8-") as tmp, _quiet_root_logger():
        out_path = Path(tmp) / INT8_NAME
        quantize_dynamic(dense_fp32, out_path, weight_type=QuantType.QInt8)
        quantised = onnx.load(str(out_path))
    # The quantiser drops the producer's metadata on some versions: carry it over.
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(dense_fp32.metadata_props)
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
    report = QuantizationReport(
        scheme="onnxruntime dynamic quantisation",
        weight_type="int8",
        onnx_bytes=len(data),
        parity=parity,
        accuracy_fp32=acc_fp32,
        accuracy_int8=acc_int8,
        labelled_samples=n_labelled,
    )
    return data, report
