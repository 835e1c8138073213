"""The INT8 model a recipe ships (`export.quantize = "int8"`), built the one way the gate, its
shadows and the export all build it.

The release artifact is what the gate must audit, so with INT8 the victim's pruned model is
quantised *before* the gate and the gate attacks the onnxruntime INT8 model
(`exporters.OnnxClassifier`), and every shadow's pruned model is quantised the same way, on its
own members. Calibration uses the first `CALIBRATION_SAMPLES` members in split order (training
data: never the holdout, which the gate measures on). The export quantises the same model on
the same rows and checks that its INT8 graph is the audited one (:func:`graph_sha256`).

The INT8 model quantises its input to steps of `input_scale` (about 0.008 on inputs normalised
to [-1, 1]), so the gate's sensitivity perturbation (1e-3 by default) would mostly vanish in
rounding; :func:`int8_sensitivity_eps` scales it to a few steps.
"""

from __future__ import annotations

import hashlib

import numpy as np
from torch import nn

from prunectl.data import Dataset
from prunectl.recipe import Recipe

CALIBRATION_SAMPLES = 512
EPS_STEPS = 4
"""The sensitivity perturbation on an INT8 model, in input quantisation steps."""


def quantizes(recipe: Recipe) -> bool:
    return recipe.export.quantize == "int8"


def calibration_rows(members: np.ndarray) -> np.ndarray:
    """The members that calibrate a model's INT8 activation ranges."""
    return np.asarray(members, dtype=np.int64)[:CALIBRATION_SAMPLES]


def int8_model(model: nn.Module, recipe: Recipe, data: Dataset, members: np.ndarray) -> nn.Module:
    """`model` as the INT8 onnxruntime model the recipe ships, calibrated on `members`."""
    from exporters import quantized_classifier

    rows = calibration_rows(members)
    classifier, _ = quantized_classifier(
        model, data.x[:1], data.x[rows], opset=recipe.export.opset, sparse=recipe.export.sparse
    )
    return classifier


def int8_sensitivity_eps(eps: float, input_scale: float | None) -> float:
    """`eps`, or `EPS_STEPS` input quantisation steps when that is larger."""
    if input_scale is None:
        return eps
    return max(eps, EPS_STEPS * float(input_scale))


def graph_sha256(onnx_bytes: bytes) -> str:
    """SHA-256 of an ONNX model without its metadata: the computation itself. The export stores
    the gate's verdict in the metadata, which the audited model cannot yet carry."""
    import onnx  # here, not at the top: every gate worker imports this module, few hash a graph

    model = onnx.load_from_string(onnx_bytes)
    del model.metadata_props[:]
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()
