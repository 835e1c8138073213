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
    """Post-export quantisation: none, or INT8 dynamic (weights int8, activations at run time)."""

    NONE = "none"
    INT8 = "int8"


def choices(enum: type[Enum]) -> tuple[str, ...]:
    """An enum's values in declaration order (what a recipe file or a flag spells)."""
    return tuple(member.value for member in enum)
