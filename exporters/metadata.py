"""Model metadata stored inside the ONNX file, so a device can use `model.onnx` alone.

Everything a consumer needs to feed the model and read its output travels in the standard
`ModelProto.metadata_props` (string key/value pairs): class names, the preprocessing
(per-channel mean and std applied to inputs scaled to [0, 1]), the per-sample input shape and
the opset. Values are JSON so any language can parse them; keys are plain and documented
here because they are the contract with on-device code:

=================  ===========================================================
key                value (JSON)
=================  ===========================================================
``class_names``    list of strings, index i names logit i
``mean``           list of floats, one per channel, or null (no normalisation)
``std``            list of floats, one per channel, or null
``input_shape``    list of ints: one sample's shape, without the batch axis
``opset``          int: the default-domain ONNX opset the model was exported with
``x.<name>``       free-form extra entries (strings), e.g. a run name or hash
=================  ===========================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from exporters.errors import ExporterInputError

_EXTRA_PREFIX = "x."
_KNOWN_KEYS = ("class_names", "mean", "std", "input_shape", "opset")


@dataclass(frozen=True)
class ExportMetadata:
    """What a device needs besides the graph. `input_shape` and `opset` are filled by the
    exporter from the example input and the export settings when left as None."""

    class_names: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    opset: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        if self.mean is not None:
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        if self.std is not None:
            object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "extra", dict(self.extra))
        if (self.mean is None) != (self.std is None):
            raise ExporterInputError("metadata: give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ExporterInputError(
                    f"metadata: mean has {len(self.mean)} values but std has {len(self.std)}; give one per channel"
                )
            if any(s <= 0 for s in self.std):
                raise ExporterInputError("metadata: every std value must be > 0")
        for key, value in self.extra.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ExporterInputError("metadata: extra entries must map strings to strings")

    def to_props(self) -> dict[str, str]:
        """The `metadata_props` entries, in a fixed order (deterministic file bytes)."""
        props = {
            "class_names": json.dumps(list(self.class_names)),
            "mean": json.dumps(list(self.mean) if self.mean is not None else None),
            "std": json.dumps(list(self.std) if self.std is not None else None),
            "input_shape": json.dumps(list(self.input_shape) if self.input_shape is not None else None),
            "opset": json.dumps(self.opset),
        }
        for key in sorted(self.extra):
            props[_EXTRA_PREFIX + key] = self.extra[key]
        return props

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "opset": self.opset,
            "extra": dict(self.extra),
        }


def write_metadata(model: onnx.ModelProto, metadata: ExportMetadata) -> None:
    """Replace the model's metadata_props with `metadata` (in place on the given proto)."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata.to_props())


def read_metadata(source: onnx.ModelProto | Path | str) -> ExportMetadata:
    """Read the metadata back from an ONNX file (or a loaded proto).

    Raises ExporterInputError when the file carries no exporter metadata or it is malformed.
    """
    if isinstance(source, onnx.ModelProto):
        model = source
    else:
        from exporters.runtime import load_onnx  # local: runtime imports this module

        model = load_onnx(Path(source), load_weights=False)
    props = {entry.key: entry.value for entry in model.metadata_props}
    missing = [key for key in _KNOWN_KEYS if key not in props]
    if missing:
        raise ExporterInputError(
            f"the ONNX model carries no exporter metadata (missing {', '.join(missing)}); export it with exporters.export_model"
        )
    try:
        values = {key: json.loads(props[key]) for key in _KNOWN_KEYS}
    except json.JSONDecodeError as error:
        raise ExporterInputError(f"the ONNX model's metadata is not valid JSON: {error}") from None
    extra = {key[len(_EXTRA_PREFIX) :]: value for key, value in props.items() if key.startswith(_EXTRA_PREFIX)}
    return ExportMetadata(
        class_names=tuple(values["class_names"] or ()),
        mean=None if values["mean"] is None else tuple(values["mean"]),
        std=None if values["std"] is None else tuple(values["std"]),
        input_shape=None if values["input_shape"] is None else tuple(values["input_shape"]),
        opset=values["opset"],
        extra=extra,
    )
