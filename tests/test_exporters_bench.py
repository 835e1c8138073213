"""exporters.benchmark: every field of the JSON result, the interleaved baseline, bad inputs.

Timings are never asserted (they depend on the machine); structure and consistency are.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from exporters import BenchResult, ExporterInputError, ExportMetadata, benchmark, export_model, optimize_offline, write_result
from exporters.bench import BenchRatios, LatencyStats, Machine, MemoryStats, ModelBench, default_result_path


def _tiny_cnn(width: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width * 14 * 14, 10)
    )  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 90 %-sparse tiny CNN exported with its dense twin: export/model.onnx, model.dense.onnx."""
    model = _tiny_cnn()
    with torch.no_grad():
        weight = model[4].weight
        weight.mul_((weight.abs() > weight.abs().flatten().kthvalue(int(0.9 * weight.numel())).values).float())
    out = tmp_path_factory.mktemp("run") / "export"
    export_model(
        model, torch.randn(1, 1, 28, 28), out, metadata=ExportMetadata(), parity_inputs=torch.randn(4, 1, 28, 28), keep_dense=True
    )
    return out


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_result_has_every_field_and_is_json(exported: Path) -> None:
    result = benchmark(exported / "model.onnx", against=exported / "model.dense.onnx", runs=6, warmup=2, batch=3)
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == _field_names(BenchResult)
    assert set(data["candidate"]) == set(data["baseline"]) == _field_names(ModelBench)
    assert set(data["candidate"]["latency"]) == _field_names(LatencyStats)
    assert set(data["candidate"]["memory"]) == _field_names(MemoryStats)
    assert set(data["ratios"]) == _field_names(BenchRatios)
    assert set(data["machine"]) == _field_names(Machine)

    assert data["onnxruntime_version"] == __import__("onnxruntime").__version__
    assert data["provider"] == "CPUExecutionProvider"
    assert (data["threads"], data["batch"], data["runs"], data["warmup"]) == (1, 3, 6, 2)
    assert data["input_shape"] == [3, 1, 28, 28] and data["input_name"] == "input"
    assert data["interleaved"] is True
    assert "InferenceSession.run()" in data["timed"] and "excludes" in data["timed"]

    candidate, baseline = data["candidate"], data["baseline"]
    assert candidate["file_bytes"] == (exported / "model.onnx").stat().st_size
    assert candidate["xz_bytes"] == (exported / "model.onnx.xz").stat().st_size
    assert baseline["xz_bytes"] is None
    assert candidate["sparse_initializers"] == 1 and baseline["sparse_initializers"] == 0
    latency = candidate["latency"]
    assert latency["runs"] == 6
    assert 0 < latency["min_ms"] <= latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert latency["throughput_per_s"] == pytest.approx(3 / (latency["mean_ms"] / 1e3))
    memory = candidate["memory"]
    assert memory["peak_rss_bytes"] >= memory["rss_before_session_bytes"] > 0
    assert memory["session_rss_bytes"] == memory["peak_rss_bytes"] - memory["rss_before_session_bytes"]
    # the probe's own peak, not this pytest process's (which holds torch, several hundred MiB):
    # Linux's ru_maxrss survives fork+exec and would report the parent's figure
    assert memory["peak_rss_bytes"] < 250 * 2**20
    ratios = data["ratios"]
    assert ratios["file_bytes"] == pytest.approx(candidate["file_bytes"] / baseline["file_bytes"])
    assert ratios["file_bytes"] < 1.0
    assert ratios["p50_latency"] == pytest.approx(candidate["latency"]["p50_ms"] / baseline["latency"]["p50_ms"])
    assert ratios["xz_bytes"] is None


def test_without_baseline_and_memory(exported: Path) -> None:
    result = benchmark(exported / "model.onnx", runs=3, warmup=0, measure_memory=False)
    assert result.baseline is None and result.ratios is None and not result.interleaved
    assert result.candidate.memory is None
    assert result.input_shape == (1, 1, 28, 28)


def test_write_result_is_atomic_json(exported: Path, tmp_path: Path) -> None:
    result = benchmark(exported / "model.onnx", runs=2, warmup=0, measure_memory=False)
    path = write_result(result, tmp_path / "nested" / "bench.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(result.to_dict()))
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]
    assert default_result_path(Path("runs/a/export/model.onnx")) == Path("runs/a/export/bench.json")


def _fixed_batch_model(path: Path, shape: list[int]) -> Path:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_bad_inputs(exported: Path, tmp_path: Path) -> None:
    model = exported / "model.onnx"
    with pytest.raises(ExporterInputError, match="no such file"):
        benchmark(tmp_path / "missing.onnx")
    with pytest.raises(ExporterInputError, match="no such file"):
        benchmark(model, against=tmp_path / "missing.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    with pytest.raises(ExporterInputError, match="is not an ONNX model"):
        benchmark(text)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ExporterInputError, match="is not an ONNX model"):
        benchmark(empty)
    with pytest.raises(ExporterInputError, match="is not a file"):
        benchmark(tmp_path)
    other = _fixed_batch_model(tmp_path / "other.onnx", [1, 3, 32, 32])
    with pytest.raises(ExporterInputError, match="input shape mismatch"):
        benchmark(model, against=other, runs=1, measure_memory=False)
    with pytest.raises(ExporterInputError, match="input shape mismatch"):
        benchmark(model, sample_shape=(1, 32, 32), runs=1, measure_memory=False)
    with pytest.raises(ExporterInputError, match="fixed batch size of 1"):
        benchmark(other, batch=4, runs=1, measure_memory=False)
    for kwargs, match in [({"runs": 0}, "runs must be"), ({"warmup": -1}, "warmup must be"), ({"threads": 0}, "threads must be")]:
        with pytest.raises(ExporterInputError, match=match):
            benchmark(model, measure_memory=False, **kwargs)


def test_each_model_runs_under_the_loading_options_it_declares(exported: Path, tmp_path: Path) -> None:
    """An offline-optimised file declares optimisation disabled; the benchmark and its fresh-process
    memory probe load it that way, and the default file with full optimisation."""
    optimized = tmp_path / "export"
    export_model(
        _tiny_cnn(), torch.randn(1, 1, 28, 28), optimized, metadata=ExportMetadata(), parity_inputs=torch.randn(4, 1, 28, 28),
        optimize="basic",
    )  # fmt: skip
    result = benchmark(optimized / "model.onnx", against=exported / "model.onnx", runs=2, warmup=0)
    assert result.candidate.graph_optimization == result.graph_optimization == "ORT_DISABLE_ALL"
    assert result.baseline.graph_optimization == "ORT_ENABLE_ALL"
    assert result.candidate.memory.peak_rss_bytes > 0


def test_compare_latency_reports_both_loading_levels(exported: Path) -> None:
    from exporters.bench import compare_latency

    optimized = optimize_offline((exported / "model.dense.onnx").read_bytes())
    comparison = compare_latency(optimized, exported / "model.onnx", runs=3, warmup=1)
    assert (comparison.runs, comparison.batch, comparison.threads) == (3, 1, 1)
    assert comparison.candidate_graph_optimization == "ORT_DISABLE_ALL"
    assert comparison.baseline_graph_optimization == "ORT_ENABLE_ALL"
    assert comparison.ratio == pytest.approx(comparison.candidate_median_ms / comparison.baseline_median_ms)
