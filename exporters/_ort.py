"""onnxruntime session settings shared by the benchmark and its fresh-process memory probe.

Kept free of onnx/torch imports: the memory probe imports only this, numpy and psutil, so
the RSS it reports is onnxruntime's and the model's, not that of libraries it does not need.
"""

from __future__ import annotations

import onnxruntime as ort

from exporters.errors import ExporterInputError

PROVIDER = "CPUExecutionProvider"
GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"


def session_options(threads: int) -> ort.SessionOptions:
    """Options for an edge-like measurement: `threads` intra-op threads, one inter-op
    thread, sequential execution, all graph optimisations (what a deployment would use)."""
    if threads < 1:
        raise ExporterInputError(f"threads must be >= 1 (got {threads})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
    options.log_severity_level = 3  # errors only: warnings would interleave with our stderr output
    return options
