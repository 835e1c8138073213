"""Errors raised by the exporters.

`exporters` never imports `prunectl`, so it cannot subclass `PrunectlError`; the CLI maps
:class:`ExporterInputError` to exit code 2 on its own (see `prunectl/commands/_common.py`).
"""

from __future__ import annotations


class ExporterError(Exception):
    """Base class: anything the exporters refuse to do."""


class ExporterInputError(ExporterError, ValueError):
    """Bad user input the user can fix: a missing file, a file that is not ONNX, an input
    shape that does not match the model, an out-of-range option. Exit code 2 in the CLI.

    Messages are one line that names the problem and the fix; one quoting a multi-line error
    from onnx or onnxruntime has its line breaks joined into spaces.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(" ".join(line.strip() for line in str(message).splitlines() if line.strip()), *args)


class ParityError(ExporterError):
    """The ONNX model does not compute what the torch model computes (logits differ by more
    than the tolerance, or the predicted class changes where it is not a near-tie).

    Raised instead of warning because a release artifact that disagrees with the model that
    was audited must never ship; no file is written when it is raised.
    """
