"""Deployment artifacts for pruned classifiers: ONNX with sparse storage, parity, benchmark.

Entry points:

* :func:`export_model` — torch model → `model.onnx` (+ `model.onnx.xz`, optionally
  `model.int8.onnx`), checked with `onnx.checker` and for parity with torch; returns an
  :class:`ExportReport`.
* :func:`quantized_classifier` — torch model → the INT8 model in memory as an
  :class:`OnnxClassifier` (a `torch.nn.Module` run by onnxruntime), the same bytes
  `export_model` writes, for a gate that audits what ships.
* :func:`optimize_offline` — ONNX bytes → the same model optimised offline at the basic level,
  marked to be loaded with optimisation disabled (lower peak memory at load).
* :func:`benchmark` — `.onnx` file(s) → onnxruntime CPU latency, throughput, memory and sizes,
  optionally against a dense baseline; returns a :class:`BenchResult`.

Sparse storage is a *size* format: onnxruntime densifies sparse initializers at load, so it
shrinks files and downloads, not latency or loaded memory.

This package imports only torch, onnx, onnxruntime, numpy, psutil and the standard library,
never `prunectl` or `gates`. Names are resolved lazily (PEP 562) so that importing
`exporters.errors`, or running the fresh-process memory probe, does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BenchResult": "exporters.bench",
    "benchmark": "exporters.bench",
    "default_result_path": "exporters.bench",
    "write_result": "exporters.bench",
    "ExporterError": "exporters.errors",
    "ExporterInputError": "exporters.errors",
    "ParityError": "exporters.errors",
    "ExportMetadata": "exporters.metadata",
    "read_metadata": "exporters.metadata",
    "DEFAULT_OPSET": "exporters.options",
    "ExportReport": "exporters.onnx",
    "export_model": "exporters.onnx",
    "quantized_classifier": "exporters.onnx",
    "OnnxClassifier": "exporters.ort_module",
    "optimize_offline": "exporters.optimize",
    "Optimization": "exporters.options",
    "Quantization": "exporters.options",
    "QuantizationMethod": "exporters.options",
    "QuantizationReport": "exporters.quantize",
    "SparseStorage": "exporters.options",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from exporters.bench import BenchResult, benchmark, default_result_path, write_result
    from exporters.errors import ExporterError, ExporterInputError, ParityError
    from exporters.metadata import ExportMetadata, read_metadata
    from exporters.onnx import ExportReport, export_model, quantized_classifier
    from exporters.optimize import optimize_offline
    from exporters.options import DEFAULT_OPSET, Optimization, Quantization, QuantizationMethod, SparseStorage
    from exporters.ort_module import OnnxClassifier
    from exporters.quantize import QuantizationReport


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'exporters' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
