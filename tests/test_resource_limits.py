"""Resource limits: evaluation and attack features touch the samples in bounded-size chunks.

However many samples are evaluated, no forward pass sees more than one chunk of inputs and no
step gathers more than one chunk of them from the dataset; only per-sample outputs (a loss,
n × C posteriors and sensitivities) grow with n. Chunking changes no result beyond float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import BatchRecorder
from gates.features import compute_features, softmax_posteriors
from prunectl.data import Dataset
from prunectl.training import EVAL_CHUNK, evaluate, predict_logits, predict_logits_at

CLASSES = 3
SAMPLES = 2600  # more than two evaluation chunks, with a ragged last one


class GatherRecorder:
    """A dataset's inputs that record how many rows each gather `x[index]` reads."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.shape = x.shape
        self.gathers: list[int] = []

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        self.gathers.append(int(index.numel()))
        return self.x[index]


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(SAMPLES, 2, 4, 4, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def labels() -> torch.Tensor:
    return torch.randint(0, CLASSES, (SAMPLES,), generator=torch.Generator().manual_seed(1))


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, CLASSES)).eval()


def dataset(x: torch.Tensor | GatherRecorder, labels: torch.Tensor) -> Dataset:
    return Dataset(x=x, y=labels, classes=tuple("abc"), source="test")  # type: ignore[arg-type]


def shuffled(n: int) -> np.ndarray:
    return np.random.default_rng(2).permutation(n)


# ------------------------------------------------------------------------------ prunectl.training


def test_evaluate_gathers_and_forwards_one_chunk_at_a_time(inputs, labels) -> None:
    recorded = GatherRecorder(inputs)
    model = BatchRecorder(small_model())
    evaluate(model, dataset(recorded, labels), shuffled(SAMPLES))
    assert max(recorded.gathers) <= EVAL_CHUNK
    assert sum(recorded.gathers) == SAMPLES
    assert max(model.batch_sizes) <= EVAL_CHUNK
    assert sum(model.batch_sizes) == SAMPLES


def test_evaluate_equals_one_pass_over_every_sample(inputs, labels) -> None:
    model, indices = small_model(), shuffled(SAMPLES)
    result = evaluate(model, dataset(inputs, labels), indices)
    with torch.no_grad():
        logits = model(inputs[indices])
    assert result.n == SAMPLES
    assert result.accuracy == pytest.approx((logits.argmax(dim=1) == labels[indices]).float().mean().item(), abs=1e-6)
    assert result.loss == pytest.approx(F.cross_entropy(logits, labels[indices]).item(), rel=1e-5)


def test_chunked_gather_gives_the_logits_of_gathering_everything_first(inputs, labels) -> None:
    """Same chunk boundaries, same forward passes: bit for bit what `predict_logits(x[indices])` gives."""
    model, indices = small_model(), shuffled(SAMPLES)
    gathered_first = predict_logits(model, inputs[torch.from_numpy(indices)])
    torch.testing.assert_close(predict_logits_at(model, dataset(inputs, labels), indices), gathered_first, rtol=0, atol=0)


def test_evaluate_on_no_samples_reads_nothing(inputs, labels) -> None:
    recorded = GatherRecorder(inputs)
    result = evaluate(small_model(), dataset(recorded, labels), np.array([], dtype=np.int64))
    assert result.n == 0 and np.isnan(result.accuracy)
    assert recorded.gathers == []


# ----------------------------------------------------------------------------------- gates.features


@pytest.mark.parametrize(("chunk_size", "samples"), [(256, 10), (64, 10), (16, 50), (7, 3)])
def test_no_feature_pass_sees_more_than_one_chunk_of_inputs(inputs, labels, chunk_size: int, samples: int) -> None:
    """Perturbed copies count too: a chunk of 256 samples × 10 perturbations runs as ten passes of 256."""
    model = BatchRecorder(small_model())
    n = 300
    compute_features(model, inputs, labels, shuffled(SAMPLES)[:n], num_classes=CLASSES, samples=samples, chunk_size=chunk_size)
    assert max(model.batch_sizes) <= chunk_size
    assert sum(model.batch_sizes) == n * (samples + 1)  # one clean pass and `samples` perturbed ones per sample


def test_features_in_chunks_equal_features_in_one_pass(inputs, labels) -> None:
    model, indices = small_model(), shuffled(SAMPLES)[:500]
    one_pass = compute_features(model, inputs, labels, indices, num_classes=CLASSES, samples=4, chunk_size=500 * 4)
    chunked = compute_features(model, inputs, labels, indices, num_classes=CLASSES, samples=4, chunk_size=48)
    np.testing.assert_array_equal(chunked.indices, one_pass.indices)
    np.testing.assert_array_equal(chunked.labels, one_pass.labels)
    np.testing.assert_allclose(chunked.posteriors, one_pass.posteriors, rtol=0, atol=1e-6)
    # a posterior's rounding (~1e-7) is amplified by 1/eps = 1000 in a sensitivity
    np.testing.assert_allclose(chunked.sensitivity, one_pass.sensitivity, rtol=1e-3, atol=1e-3)


def test_softmax_posteriors_forward_one_chunk_at_a_time(inputs, labels) -> None:
    model = BatchRecorder(small_model())
    posteriors = softmax_posteriors(model, inputs, shuffled(SAMPLES), chunk_size=300)
    assert max(model.batch_sizes) <= 300
    assert sum(model.batch_sizes) == SAMPLES
    one_pass = softmax_posteriors(small_model(), inputs, shuffled(SAMPLES), chunk_size=SAMPLES)
    np.testing.assert_allclose(posteriors, one_pass, rtol=0, atol=1e-6)


def test_feature_memory_does_not_grow_with_the_number_of_samples(inputs, labels) -> None:
    """Twice the samples, twice the passes, the same largest pass."""
    sizes = []
    for n in (512, 1024):
        model = BatchRecorder(small_model())
        compute_features(model, inputs, labels, shuffled(SAMPLES)[:n], num_classes=CLASSES, samples=4, chunk_size=64)
        sizes.append((max(model.batch_sizes), len(model.batch_sizes)))
    (largest_n, passes_n), (largest_2n, passes_2n) = sizes
    assert largest_n == largest_2n == 64
    assert passes_2n == 2 * passes_n
