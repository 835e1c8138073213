"""onnxruntime session settings shared by the benchmark and its fresh-process memory probe.

Kept free of onnx/torch imports: the memory probe imports only this, numpy and psutil, so
the RSS it reports is onnxruntime's and the model's, not that of libraries it does not need.

A model file may declare the graph optimisation level it is meant to be loaded with, in its
`metadata_props` under :data:`SESSION_OPTIMIZATION_KEY` (one of :data:`GRAPH_LEVELS`' keys):
a file optimised offline says "disabled" (optimising it again at load would only cost memory
and time), an INT8 QDQ file says "all" (its QuantizeLinear/DequantizeLinear pairs only become
integer kernels through the load-time fusions). A file without the key gets
:data:`GRAPH_OPTIMIZATION`. Whoever opens a session for an exported file (parity checks,
the benchmark, its memory probe, `OnnxClassifier`) passes the declared value here, so every
figure is measured under the options the file ships with.
"""

from __future__ import annotations

import onnxruntime as ort

from exporters.errors import ExporterInputError

PROVIDER = "CPUExecutionProvider"
GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"

SESSION_OPTIMIZATION_KEY = "x.session_graph_optimization"
"""metadata_props key naming the graph optimisation level a file is meant to be loaded with."""

GRAPH_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
"""Declared value (metadata, `--graph-optimization`) → onnxruntime GraphOptimizationLevel name."""


def graph_level_name(declared: str | None) -> str:
    """The onnxruntime level name for a declared value; None means the default."""
    if declared is None:
        return GRAPH_OPTIMIZATION
    try:
        return GRAPH_LEVELS[declared]
    except KeyError:
        allowed = ", ".join(GRAPH_LEVELS)
        raise ExporterInputError(
            f"the model declares {SESSION_OPTIMIZATION_KEY}={declared!r}, which is not one of {allowed}; re-export it"
        ) from None


def session_options(threads: int, graph_optimization: str | None = None) -> ort.SessionOptions:
    """Options for an edge-like measurement: `threads` intra-op threads, one inter-op
    thread, sequential execution, and the graph optimisation level the model declares
    (`graph_optimization`, a key of GRAPH_LEVELS; None: all optimisations, what a deployment
    would use)."""
    if threads < 1:
        raise ExporterInputError(f"threads must be >= 1 (got {threads})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, graph_level_name(graph_optimization))
    options.log_severity_level = 3  # errors only: warnings would interleave with our stderr output
    return options
