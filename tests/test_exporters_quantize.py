"""INT8 chosen by the graph (static QDQ for convolutions, dynamic for MLPs), OnnxClassifier,
offline optimisation and the loading options a file declares.

Small models, fixed seeds; no timing is asserted (latency figures are report-only).
"""

from __future__ import annotations

import copy
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from exporters import (
    ExporterInputError,
    ExportMetadata,
    OnnxClassifier,
    Optimization,
    QuantizationMethod,
    export_model,
    optimize_offline,
    quantized_classifier,
    read_metadata,
)
from exporters.runtime import open_session

SHAPE = (1, 12, 12)


def small_cnn() -> nn.Module:
    """Two convolutions and a linear head, 12x12 grey inputs, 5 classes, magnitude-pruned
    to 60 % with one whole output channel of the first convolution pruned."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 3 * 3, 5),
    )  # fmt: skip
    with torch.no_grad():
        for module in model:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                weight = module.weight
                weight.mul_((weight.abs() > weight.abs().flatten().kthvalue(int(0.6 * weight.numel())).values).float())
        model[0].weight[3].zero_()
    return model.eval()


def small_mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(144, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5)).eval()


def samples(n: int, seed: int) -> torch.Tensor:
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


CALIBRATION = samples(64, 10)  # stands in for training members / dev samples
META = ExportMetadata(class_names=tuple("abcde"), mean=(0.5,), std=(0.25,), extra={"run": "test"})


@pytest.fixture(scope="module")
def static_int8() -> tuple[OnnxClassifier, object]:
    return quantized_classifier(small_cnn(), samples(1, 0), CALIBRATION, metadata=META)


def _ops(model: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


def _graph(classifier: OnnxClassifier) -> onnx.ModelProto:
    return onnx.load_from_string(classifier.onnx_bytes)


def _dense_initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer as a dense array (sparse ones expanded)."""
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for sparse in model.graph.sparse_initializer:
        dense = np.zeros(int(np.prod(sparse.dims)), dtype=numpy_helper.to_array(sparse.values).dtype)
        dense[numpy_helper.to_array(sparse.indices).reshape(-1)] = numpy_helper.to_array(sparse.values)
        out[sparse.values.name] = dense.reshape(tuple(sparse.dims))
    return out


def test_conv_model_gets_static_qdq_with_per_channel_weights(static_int8) -> None:
    classifier, report = static_int8
    graph = _graph(classifier)
    ops = _ops(graph)
    assert report.method is QuantizationMethod.STATIC_QDQ and "convolutions" in report.reason
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert not ops["ConvInteger"] and not ops["MatMulInteger"]
    assert report.weighted_nodes == report.quantized_nodes == 3  # 2 Conv + 1 Gemm, all fusable QDQ units
    assert report.per_channel and report.calibration_samples == 64
    # graph input and output stay float
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    tensors = _dense_initializers(graph)
    producers = {node.output[0]: node for node in graph.graph.node}
    model = small_cnn()
    torch_weights = {"0.weight": model[0].weight, "3.weight": model[3].weight}
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    assert len(convs) == 2
    for conv in convs:
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        weight, scale, zero_point = (tensors[name] for name in dq.input)
        assert weight.dtype == np.int8
        assert scale.shape == (weight.shape[0],)  # one scale per output channel
        assert {a.name: a.i for a in dq.attribute}.get("axis", 1) == 0
        assert not zero_point.any()  # symmetric
        original = torch_weights[dq.input[0].removesuffix("_quantized")].detach().numpy()
        assert (original == 0).any() and (weight[original == 0] == 0).all()  # pruned zeros stay exactly 0
    first = tensors["0.weight_quantized"]
    assert not first[3].any()  # the fully pruned channel too


def test_input_scale_is_the_graph_inputs_quantisation_step(static_int8) -> None:
    classifier, report = static_int8
    graph = _graph(classifier)
    (quantize_input,) = [n for n in graph.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input"]
    scale = float(_dense_initializers(graph)[quantize_input.input[1]].reshape(-1)[0])
    assert report.input_scale == classifier.input_scale == scale > 0


def test_mlp_gets_dynamic_quantisation_of_its_linear_layers() -> None:
    classifier, report = quantized_classifier(small_mlp(), samples(1, 0), None)
    ops = _ops(_graph(classifier))
    assert report.method is QuantizationMethod.DYNAMIC and "no convolutions" in report.reason
    assert ops["MatMulInteger"] == 3 and not ops["Gemm"] and not ops["MatMul"]  # every nn.Linear (exported as Gemm)
    assert report.weighted_nodes == report.quantized_nodes == 3
    assert report.input_scale is None and classifier.input_scale is None
    assert report.calibration_samples == 0


def test_int8_bytes_are_deterministic(static_int8) -> None:
    classifier, _ = static_int8
    again, _ = quantized_classifier(small_cnn(), samples(1, 0), CALIBRATION.clone(), metadata=META)
    assert again.onnx_bytes == classifier.onnx_bytes and again.sha256 == classifier.sha256
    mlp_a, _ = quantized_classifier(small_mlp(), samples(1, 0), None)
    mlp_b, _ = quantized_classifier(small_mlp(), samples(1, 0), None)
    assert mlp_a.onnx_bytes == mlp_b.onnx_bytes
    # the parity inputs only feed the report, never the model
    other, _ = quantized_classifier(small_cnn(), samples(1, 0), CALIBRATION, metadata=META, parity_inputs=samples(5, 3))
    assert other.onnx_bytes == classifier.onnx_bytes


def test_quantized_classifier_equals_the_exported_int8_file(static_int8, tmp_path: Path) -> None:
    classifier, report = static_int8
    exported = export_model(
        small_cnn(), samples(1, 0), tmp_path, metadata=META, parity_inputs=samples(8, 1),
        parity_labels=torch.arange(8) % 5, quantize="int8", calibration_inputs=CALIBRATION,
    )  # fmt: skip
    assert exported.int8_path.read_bytes() == classifier.onnx_bytes
    q = exported.quantization
    assert q.method is QuantizationMethod.STATIC_QDQ and q.input_scale == report.input_scale
    assert q.labelled_samples == 8 and q.accuracy_int8 is not None and q.parity.finite
    latency = exported.int8_latency
    assert latency.fp32_graph_optimization == latency.int8_graph_optimization == "ORT_ENABLE_ALL"
    assert latency.int8_slower_than_fp32 == (latency.int8_to_fp32 > 1.0)
    data = exported.to_dict()
    assert data["quantization"]["method"] == "static-qdq" and data["int8_latency"]["runs"] == 30
    assert read_metadata(exported.int8_path).extra == {"run": "test", "session_graph_optimization": "all"}


def test_onnx_classifier_is_a_parameterless_cpu_module(static_int8) -> None:
    classifier, _ = static_int8
    x = samples(300, 4)
    session = ort.InferenceSession(classifier.onnx_bytes, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": x.numpy()})[0]
    chunked = OnnxClassifier(classifier.onnx_bytes, batch_size=7)
    for module in (classifier, chunked):
        logits = module(x)
        assert logits.dtype == torch.float32 and logits.device.type == "cpu" and logits.shape == (300, 5)
        np.testing.assert_array_equal(logits.numpy(), expected)
    # no parameters: code that looks for a device in model.parameters() must fall back to the CPU
    assert next(iter(classifier.parameters()), None) is None and not list(classifier.buffers())
    assert classifier.train() is classifier and classifier.training
    np.testing.assert_array_equal(classifier(x[:3]).numpy(), expected[:3])
    classifier.eval()
    assert not classifier.training
    assert classifier.threads == 1
    assert len(classifier.sha256) == 64 and classifier.sha256[:12] in repr(classifier)


def test_onnx_classifier_pickles_and_deep_copies(static_int8) -> None:
    classifier, _ = static_int8
    x = samples(9, 5)
    expected = classifier(x).numpy()
    for clone in (pickle.loads(pickle.dumps(classifier)), copy.deepcopy(classifier)):
        assert clone.onnx_bytes == classifier.onnx_bytes and clone.sha256 == classifier.sha256
        assert clone.input_scale == classifier.input_scale
        np.testing.assert_array_equal(clone(x).numpy(), expected)


def test_int8_perturbation_below_the_input_step_is_rounded_away(static_int8) -> None:
    """The trap a sensitivity signal falls into: an INT8 model quantises its input, so a
    perturbation below half the input step (here 1e-3 against a step of a few 1e-2) changes
    nothing, where the fp32 model reacts to any perturbation. Perturb by several steps."""
    classifier, _ = static_int8
    scale = classifier.input_scale
    assert scale is not None and 1e-3 < scale / 2
    graph = _graph(classifier)
    (quantize_input,) = [n for n in graph.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input"]
    zero_point = int(_dense_initializers(graph)[quantize_input.input[2]].reshape(-1)[0])
    raw = samples(64, 6).numpy()
    # inputs on the INT8 input grid (what the quantised model sees), so 1e-3 cannot cross a rounding boundary
    on_grid = torch.from_numpy(((np.clip(np.rint(raw / scale) + zero_point, 0, 255) - zero_point) * scale).astype(np.float32))

    def changed(model: torch.nn.Module, delta: float) -> float:
        with torch.no_grad():
            return float((model(on_grid + delta) != model(on_grid)).any(dim=1).float().mean())

    assert changed(classifier, 1e-3) == 0.0
    assert changed(classifier, 4 * scale) == 1.0
    assert changed(small_cnn(), 1e-3) == 1.0  # the fp32 torch model moves at any scale


@pytest.mark.parametrize("calibration", [None, torch.empty(0, *SHAPE)], ids=["missing", "empty"])
def test_conv_model_without_calibration_is_refused(calibration, tmp_path: Path) -> None:
    with pytest.raises(ExporterInputError, match="calibration") as caught:
        quantized_classifier(small_cnn(), samples(1, 0), calibration)
    assert "\n" not in str(caught.value) and "never the holdout" in str(caught.value)
    with pytest.raises(ExporterInputError, match="calibration"):
        export_model(
            small_cnn(), samples(1, 0), tmp_path, metadata=ExportMetadata(), parity_inputs=samples(4, 1),
            quantize="int8", calibration_inputs=calibration,
        )  # fmt: skip
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "model.int8.onnx").exists()


def test_optimize_offline_is_portable_and_loaded_with_optimisation_disabled(tmp_path: Path) -> None:
    plain = export_model(small_cnn(), samples(1, 0), tmp_path / "plain", metadata=META, parity_inputs=samples(4, 1), sparse="dense")
    original = plain.onnx_path.read_bytes()
    optimized = optimize_offline(original, level=Optimization.BASIC)
    assert optimize_offline(original) == optimized  # deterministic
    assert optimize_offline(original, level="none") == original
    model = onnx.load_from_string(optimized)
    onnx.checker.check_model(model)
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    assert {o.domain for o in model.opset_import} == {""}
    assert read_metadata(model).extra == {"run": "test", "session_graph_optimization": "disabled"}
    session = open_session(optimized)
    assert session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert open_session(original).get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    x = samples(16, 7).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], open_session(original).run(None, {"input": x})[0], atol=1e-5, rtol=0)


def test_export_with_basic_optimisation_leaves_int8_unoptimised(tmp_path: Path) -> None:
    report = export_model(
        small_cnn(), samples(1, 0), tmp_path, metadata=META, parity_inputs=samples(8, 1),
        quantize="int8", calibration_inputs=CALIBRATION, optimize="basic", keep_dense=True,
    )  # fmt: skip
    assert report.parity.passed
    assert read_metadata(report.onnx_path) == report.metadata
    assert report.metadata.extra["session_graph_optimization"] == "disabled"
    assert read_metadata(report.dense_path) == report.metadata
    opt = report.optimization
    assert (opt.level, opt.fp32_graph_optimization) == ("basic", "ORT_DISABLE_ALL")
    assert opt.int8_optimized is False and opt.int8_graph_optimization == "ORT_ENABLE_ALL" and "QDQ" in opt.note
    assert report.int8_latency.fp32_graph_optimization == "ORT_DISABLE_ALL"
    assert read_metadata(report.int8_path).extra["session_graph_optimization"] == "all"
    # the INT8 file does not depend on the fp32 file's optimisation
    alone, _ = quantized_classifier(small_cnn(), samples(1, 0), CALIBRATION, metadata=META)
    assert report.int8_path.read_bytes() == alone.onnx_bytes


def test_optimize_offline_refusals() -> None:
    classifier, _ = quantized_classifier(small_mlp(), samples(1, 0), None)
    with pytest.raises(ExporterInputError, match="quantised model is refused"):
        optimize_offline(classifier.onnx_bytes)
    with pytest.raises(ExporterInputError, match="optimize must be one of none, basic"):
        optimize_offline(classifier.onnx_bytes, level="extended")
    # a contrib operator survives the basic level: not a portable release artifact
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
        "contrib",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    contrib = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("com.microsoft", 1)])
    contrib.ir_version = 8
    with pytest.raises(ExporterInputError, match="non-standard operators \\(com.microsoft:Gelu\\)") as caught:
        optimize_offline(contrib.SerializeToString())
    assert "\n" not in str(caught.value)


def test_unknown_declared_loading_level_is_refused() -> None:
    classifier, _ = quantized_classifier(small_mlp(), samples(1, 0), None)
    model = onnx.load_from_string(classifier.onnx_bytes)
    for entry in model.metadata_props:
        if entry.key == "x.session_graph_optimization":
            entry.value = "turbo"
    with pytest.raises(ExporterInputError, match="'turbo', which is not one of disabled, basic, extended, all"):
        open_session(model.SerializeToString())
