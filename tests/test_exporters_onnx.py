"""exporters.export_model: checker, parity, sparse storage, xz determinism, metadata, errors."""

from __future__ import annotations

import dataclasses
import lzma
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from exporters import (
    ExporterInputError,
    ExportMetadata,
    ParityError,
    SparseStorage,
    export_model,
    read_metadata,
)
from exporters.sparse import binary_entropy, reference_bits, sparse_pays


def fashion_cnn() -> nn.Module:
    """The builtin CNN's architecture (28×28 grey inputs, 10 classes)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def resnet18() -> nn.Module:
    import torchvision

    torch.manual_seed(2)
    return torchvision.models.resnet18(num_classes=10)  # random init, never downloads


def magnitude_prune(model: nn.Module, sparsity: float, only: tuple[str, ...] | None = None) -> nn.Module:
    """One-shot global magnitude pruning of conv/linear weights (in place)."""
    weights = [
        module.weight
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and (only is None or name in only)
    ]
    scores = torch.cat([w.detach().abs().reshape(-1) for w in weights])
    k = int(sparsity * scores.numel())
    if k == 0:
        return model
    threshold = scores.kthvalue(k).values
    with torch.no_grad():
        for w in weights:
            w.mul_((w.abs() > threshold).to(w.dtype))
    return model


def _meta(n: int = 10) -> ExportMetadata:
    return ExportMetadata(class_names=tuple(f"class-{i}" for i in range(n)), mean=(0.2860,), std=(0.3530,))


def _export(model: nn.Module, shape: tuple[int, ...], out: Path, **kwargs) -> object:
    torch.manual_seed(3)
    kwargs.setdefault("metadata", _meta())
    return export_model(
        model, torch.randn(2, *shape), out, parity_inputs=torch.randn(8, *shape), random_inputs=8, **kwargs
    )


def _ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(
    ("factory", "shape"),
    [(fashion_cnn, (1, 28, 28)), (mlp, (1, 8, 8)), (resnet18, (3, 32, 32))],
    ids=["builtin-cnn", "mlp", "resnet18"],
)
def test_export_passes_checker_and_parity(factory, shape, tmp_path: Path) -> None:
    model = magnitude_prune(factory(), 0.95)  # 0.95 keeps resnet18's xz step short
    report = _export(model, shape, tmp_path)
    onnx.checker.check_model(onnx.load(str(report.onnx_path)))
    assert report.parity.passed
    assert report.parity.max_abs_diff <= 1e-4
    assert report.parity.argmax_agreement == 1.0
    assert report.parity.samples == 16
    assert report.parity.reference_max_abs > 1e-2  # logits of a real scale: the check can fail
    # the file alone reproduces torch on a fresh batch with a different batch size (dynamic axis)
    x = torch.randn(5, *shape)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(_ort_logits(report.onnx_path, x.numpy()), expected, atol=1e-4, rtol=0)


def test_sparse_initializer_model_matches_dense_export(tmp_path: Path) -> None:
    report = _export(magnitude_prune(mlp(), 0.9), (1, 8, 8), tmp_path, keep_dense=True)
    sparse_model = onnx.load(str(report.onnx_path))
    dense_model = onnx.load(str(report.dense_path))
    assert len(sparse_model.graph.sparse_initializer) == 3
    assert len(dense_model.graph.sparse_initializer) == 0
    x = np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_ort_logits(report.onnx_path, x), _ort_logits(report.dense_path, x))
    assert report.sizes.onnx_bytes < report.sizes.dense_onnx_bytes


def test_sparse_decision_is_per_tensor(tmp_path: Path) -> None:
    model = mlp()
    magnitude_prune(model, 0.95, only=("1",))  # first Linear: 95 % zeros → sparse
    magnitude_prune(model, 0.5, only=("3",))  # second: 50 % zeros, COO would be larger → dense
    report = _export(model, (1, 8, 8), tmp_path)  # last Linear untouched → dense
    storage = {t.name: t.storage for t in report.tensors}
    assert storage == {
        "1.weight": "sparse", "1.bias": "dense",
        "3.weight": "dense", "3.bias": "dense",
        "5.weight": "dense", "5.bias": "dense",
    }  # fmt: skip
    stored = onnx.load(str(report.onnx_path)).graph
    assert [s.values.name for s in stored.sparse_initializer] == ["1.weight"]
    assert {"3.weight", "5.weight"} <= {t.name for t in stored.initializer}
    assert report.sizes.sparse_tensors == 1


def test_dense_storage_mode_writes_no_sparse_initializers(tmp_path: Path) -> None:
    report = _export(magnitude_prune(mlp(), 0.9), (1, 8, 8), tmp_path, sparse=SparseStorage.DENSE)
    assert not onnx.load(str(report.onnx_path)).graph.sparse_initializer
    assert report.sizes.onnx_bytes == report.sizes.dense_onnx_bytes


def test_xz_artifact_is_exact_and_deterministic(tmp_path: Path) -> None:
    first = _export(magnitude_prune(fashion_cnn(), 0.9), (1, 28, 28), tmp_path / "a")
    second = _export(magnitude_prune(fashion_cnn(), 0.9), (1, 28, 28), tmp_path / "b")
    assert lzma.decompress(first.xz_path.read_bytes()) == first.onnx_path.read_bytes()
    assert first.onnx_path.read_bytes() == second.onnx_path.read_bytes()
    assert first.xz_path.read_bytes() == second.xz_path.read_bytes()
    assert first.sizes.xz_bytes == first.xz_path.stat().st_size
    assert first.sizes.onnx_bytes == first.onnx_path.stat().st_size
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["model.onnx", "model.onnx.xz"]  # no temp files left


def test_export_leaves_the_torch_model_unchanged(tmp_path: Path) -> None:
    model = magnitude_prune(fashion_cnn(), 0.5)
    model.append(nn.BatchNorm1d(10))  # buffers that train-mode forward passes would update
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _export(model, (1, 28, 28), tmp_path)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert model.training  # mode untouched: the copy was put in eval mode, not the caller's model


def test_metadata_round_trips(tmp_path: Path) -> None:
    metadata = ExportMetadata(
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        mean=(0.2860,),
        std=(0.3530,),
        extra={"run": "fashion-0.9"},
    )
    report = _export(fashion_cnn(), (1, 28, 28), tmp_path, metadata=metadata, opset=17)
    read = read_metadata(report.onnx_path)
    assert read.class_names == metadata.class_names
    assert read.mean == metadata.mean and read.std == metadata.std
    assert read.input_shape == (1, 28, 28)
    assert read.opset == 17
    assert read.extra == {"run": "fashion-0.9"}
    assert read == report.metadata
    model = onnx.load(str(report.onnx_path))
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_report_is_json_serialisable_and_sizes_are_consistent(tmp_path: Path) -> None:
    import json

    report = _export(magnitude_prune(fashion_cnn(), 0.9), (1, 28, 28), tmp_path)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["onnx_path"] == str(report.onnx_path)
    sizes = report.sizes
    assert sizes.xz_bytes < sizes.onnx_bytes < sizes.dense_onnx_bytes
    assert sizes.sparsity == pytest.approx(1 - sizes.nonzero_parameters / sizes.parameters)
    assert sizes.xz_to_dense == pytest.approx(sizes.xz_bytes / sizes.dense_onnx_bytes)
    assert 0 < sizes.reference_bytes < sizes.dense_onnx_bytes


def test_information_reference_size() -> None:
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.0) == binary_entropy(1.0) == 0.0
    assert reference_bits(1000, 1000, 32) == 32_000  # dense: values only
    assert reference_bits(1000, 100, 32) == pytest.approx(100 * 32 + 1000 * binary_entropy(0.1))
    assert sparse_pays(numel=300, nnz=99, itemsize=4)  # 99·12 < 300·4
    assert not sparse_pays(numel=300, nnz=100, itemsize=4)  # 1/3 density: break-even, stays dense


def test_int8_quantisation_reports_accuracy_before_and_after(tmp_path: Path) -> None:
    """An MLP (no convolutions) is quantised dynamically, without calibration samples."""
    torch.manual_seed(4)
    x = torch.randn(32, 1, 8, 8)
    labels = torch.randint(0, 10, (32,))
    model = magnitude_prune(mlp(), 0.9)
    report = export_model(
        model, x[:1], tmp_path, metadata=_meta(), parity_inputs=x, parity_labels=labels, quantize="int8"
    )
    q = report.quantization
    assert q is not None and report.int8_path is not None and report.int8_path.is_file()
    assert q.labelled_samples == 32 and q.parity.samples == 32 + 16
    assert q.accuracy_fp32 == pytest.approx(report.accuracy.onnx)
    assert 0.0 <= q.accuracy_int8 <= 1.0
    assert q.parity.passed is None and q.parity.finite
    assert q.onnx_bytes == report.int8_path.stat().st_size < report.sizes.dense_onnx_bytes
    assert q.method == "dynamic" and q.input_scale is None and q.quantized_nodes == q.weighted_nodes == 3
    # the INT8 file carries the fp32 metadata, plus the loading options that keep it fast
    int8_metadata = read_metadata(report.int8_path)
    assert int8_metadata.extra == {"session_graph_optimization": "all"}
    assert dataclasses.replace(int8_metadata, extra={}) == report.metadata
    int8_logits = _ort_logits(report.int8_path, x.numpy())
    assert int8_logits.shape == (32, 10)
    latency = report.int8_latency
    assert latency is not None and latency.runs == 30 and latency.batch == 1 and latency.threads == 1
    assert latency.int8_slower_than_fp32 == (latency.int8_to_fp32 > 1.0)  # reported, never asserted on
    assert report.optimization.level == "none" and report.optimization.int8_graph_optimization == "ORT_ENABLE_ALL"


class _ChangesAfterFirstCall(nn.Module):
    """Traced on its first call; later calls add 1 — the ONNX file cannot match torch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x) + (0.0 if self.calls == 1 else 1.0)


def test_parity_failure_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with pytest.raises(ParityError, match="onnxruntime disagrees with torch"):
        export_model(
            _ChangesAfterFirstCall(), torch.randn(1, 4), out, metadata=ExportMetadata(), parity_inputs=torch.randn(4, 4)
        )
    assert not (out / "model.onnx").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"parity_inputs": torch.randn(4, 1, 9, 9)}, "input shape mismatch"),
        ({"metadata": ExportMetadata(input_shape=(1, 9, 9))}, "input shape mismatch"),
        ({"metadata": ExportMetadata(class_names=("a", "b"))}, "2 classes but the model returns 10"),
        ({"parity_labels": torch.zeros(3, dtype=torch.long)}, "one label per parity input"),
        ({"opset": 3}, "opset must be in"),
        ({"sparse": "bitmask"}, "sparse must be one of auto, dense"),
        ({"quantize": "int4"}, "quantize must be one of none, int8"),
        ({"optimize": "all"}, "optimize must be one of none, basic"),
        ({"calibration_inputs": torch.randn(4, 1, 9, 9)}, "calibration inputs are"),
        ({"metadata": ExportMetadata(extra={"session_graph_optimization": "disabled"})}, "is reserved"),
        ({"tolerance": 0.0}, "tolerance must be a positive number"),
    ],
    ids=[
        "parity-shape", "metadata-shape", "class-names", "labels", "opset", "sparse", "quantize", "optimize",
        "calibration-shape", "reserved-metadata", "tolerance",
    ],  # fmt: skip
)
def test_bad_inputs_raise_exporter_input_error(kwargs: dict, match: str, tmp_path: Path) -> None:
    arguments = {"metadata": ExportMetadata(), "parity_inputs": torch.randn(4, 1, 8, 8)}
    arguments.update(kwargs)
    with pytest.raises(ExporterInputError, match=match):
        export_model(mlp(), torch.randn(1, 1, 8, 8), tmp_path, **arguments)
    assert not (tmp_path / "model.onnx").exists()


def test_metadata_validation_and_missing_metadata(tmp_path: Path) -> None:
    with pytest.raises(ExporterInputError, match="both mean and std"):
        ExportMetadata(mean=(0.5,))
    with pytest.raises(ExporterInputError, match="one per channel"):
        ExportMetadata(mean=(0.5, 0.5), std=(0.2,))
    bare = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])],
        )
    )
    path = tmp_path / "bare.onnx"
    onnx.save(bare, str(path))
    with pytest.raises(ExporterInputError, match="no exporter metadata"):
        read_metadata(path)
    with pytest.raises(ExporterInputError, match="no such file"):
        read_metadata(tmp_path / "missing.onnx")
