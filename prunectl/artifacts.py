"""Release artifact formats, in one registry: `export.format` → the exporter that writes it.

An exporter takes a model, an example input and metadata and writes its files into a
directory, checked against the model (DESIGN.md, "Exporter"); the `exporters` package holds
the implementations. Listing the formats imports none of them.
"""

from __future__ import annotations

from typing import Any, Protocol

from prunectl.errors import RecipeError
from prunectl.registry import Registry


class Exporter(Protocol):
    """`export(model, example, out_dir, *, metadata, sparse, quantize, parity_inputs, parity_labels,
    tolerance, opset, seed) -> report` (a report with `to_dict()`), as `exporters.export_model`."""

    def __call__(self, model: Any, example: Any, out_dir: Any, **settings: Any) -> Any: ...


EXPORT_FORMATS: Registry[Exporter] = Registry("export format", RecipeError)
EXPORT_FORMATS.add("onnx", "exporters:export_model")
