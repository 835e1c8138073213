"""The exporter's choices and file names, without its heavy imports.

The recipe's `[export]` section validates its values against these enums, and the run
directory names the exported files with these constants, so neither has to import onnx,
onnxruntime or torch (the CLI refuses a bad value instantly) nor spell them again.
"""

from __future__ import annotations

from enum import Enum

ONNX_NAME = "model.onnx"
XZ_NAME = "model.onnx.xz"
INT8_NAME = "model.int8.onnx"
DEFAULT_OPSET = 17
OPSET_RANGE = (9, 20)


class SparseStorage(str, Enum):
    """How initializers are stored: `auto` decides per tensor by size, `dense` never uses
    sparse initializers (e.g. for runtimes that do not read them)."""

    AUTO = "auto"
    DENSE = "dense"


class Quantization(str, Enum):
    """Post-export quantisation: none, or INT8. The INT8 method follows from the graph (see
    :class:`QuantizationMethod`), never from a timing race."""

    NONE = "none"
    INT8 = "int8"


class QuantizationMethod(str, Enum):
    """How an INT8 model was made.

    * `static-qdq`: models with convolutions. QuantizeLinear/DequantizeLinear pairs with
      per-channel symmetric int8 weights and uint8 activations whose ranges come from
      calibration samples; onnxruntime fuses them into integer kernels at load.
    * `dynamic`: models without convolutions (MLPs). int8 weights, activations quantised at
      run time; no calibration.
    """

    STATIC_QDQ = "static-qdq"
    DYNAMIC = "dynamic"


class Optimization(str, Enum):
    """Offline graph optimisation of the fp32 release file.

    `basic` runs onnxruntime's basic level (constant folding, redundant-node elimination:
    standard ONNX operators only) once at export and marks the file to be loaded with
    optimisation disabled, which roughly halves the peak memory of loading it. The extended
    and all levels are not offered: they write host-specific layouts and `com.microsoft`
    operators, which are not portable release artifacts.
    """

    NONE = "none"
    BASIC = "basic"


def choices(enum: type[Enum]) -> tuple[str, ...]:
    """An enum's values in declaration order (what a recipe file or a flag spells)."""
    return tuple(member.value for member in enum)
