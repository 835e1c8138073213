"""gates.features: posteriors, sensitivities and provenance of the attack features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import BatchRecorder
from gates.features import AttackFeatures, compute_features, softmax_posteriors

CLASSES = 4


@pytest.fixture(scope="module")
def dataset() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(60, 2, 3, 3, generator=generator)
    labels = torch.randint(0, CLASSES, (60,), generator=generator)
    return inputs, labels


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(18, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, CLASSES))


class ConstantModel(nn.Module):
    """Ignores its input: nothing an input perturbation does can move its posteriors."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([2.0, 0.5, -1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def test_posteriors_are_probabilities_and_sensitivities_non_negative(dataset) -> None:
    inputs, labels = dataset
    features = compute_features(small_model(), inputs, labels, np.arange(0, 60, 3), num_classes=CLASSES)
    assert features.posteriors.shape == features.sensitivity.shape == (20, CLASSES)
    assert features.posteriors.dtype == features.sensitivity.dtype == np.float64
    np.testing.assert_allclose(features.posteriors.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(features.posteriors >= 0) and np.all(features.sensitivity >= 0)
    assert np.any(features.sensitivity > 0)


def test_indices_and_labels_follow_the_requested_order(dataset) -> None:
    inputs, labels = dataset
    indices = np.array([41, 3, 17, 3, 59, 0])
    features = compute_features(small_model(), inputs, labels, indices, num_classes=CLASSES, chunk_size=4)
    assert features.indices.dtype == np.int64 and features.labels.dtype == np.int64
    np.testing.assert_array_equal(features.indices, indices)
    np.testing.assert_array_equal(features.labels, labels.numpy()[indices])
    # the same sample twice gets the same features (its noise depends on its index, not its position)
    np.testing.assert_array_equal(features.sensitivity[1], features.sensitivity[3])


def test_deterministic_under_seed_and_different_across_seeds(dataset) -> None:
    inputs, labels = dataset
    model, indices = small_model(), np.arange(30)
    first = compute_features(model, inputs, labels, indices, num_classes=CLASSES, seed=5)
    second = compute_features(model, inputs, labels, indices, num_classes=CLASSES, seed=5)
    other = compute_features(model, inputs, labels, indices, num_classes=CLASSES, seed=6)
    np.testing.assert_array_equal(first.sensitivity, second.sensitivity)
    np.testing.assert_array_equal(first.posteriors, other.posteriors)
    assert not np.allclose(first.sensitivity, other.sensitivity)


def test_chunk_size_and_order_change_nothing_but_float_rounding(dataset) -> None:
    """A sample's noise is drawn from (seed, dataset index): chunking cannot change its features."""
    inputs, labels = dataset
    model, indices = small_model(), np.arange(50)
    whole = compute_features(model, inputs, labels, indices, num_classes=CLASSES, chunk_size=256)
    chunked = compute_features(model, inputs, labels, indices, num_classes=CLASSES, chunk_size=7)
    reversed_ = compute_features(model, inputs, labels, indices[::-1], num_classes=CLASSES, chunk_size=3)
    np.testing.assert_allclose(chunked.posteriors, whole.posteriors, atol=1e-6)
    np.testing.assert_allclose(chunked.sensitivity, whole.sensitivity, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(reversed_.sensitivity[::-1], whole.sensitivity, rtol=1e-3, atol=1e-3)


def test_memory_is_bounded_by_chunk_size_times_samples_plus_one(dataset) -> None:
    inputs, labels = dataset
    model = BatchRecorder(small_model())
    compute_features(model, inputs, labels, np.arange(45), num_classes=CLASSES, samples=6, chunk_size=8)
    assert max(model.batch_sizes) <= 8 * 6
    assert sum(model.batch_sizes) == 45 * (6 + 1)  # every sample: one clean pass, `samples` perturbed ones


def test_a_constant_model_has_zero_sensitivity(dataset) -> None:
    inputs, labels = dataset
    features = compute_features(ConstantModel(), inputs, labels, np.arange(20), num_classes=CLASSES)
    np.testing.assert_array_equal(features.sensitivity, 0.0)
    np.testing.assert_allclose(
        features.posteriors, np.tile(torch.softmax(torch.tensor([2.0, 0.5, -1.0, 0.0]), 0).numpy(), (20, 1)), atol=1e-7
    )


def test_sensitivity_is_the_mean_absolute_finite_difference_over_eps() -> None:
    """1-D input, logits (a·x, 0): p1 = sigmoid(a·x), so E|p1(x + eps·u) − p1(x)| / eps → |a·p1(1 − p1)|·sqrt(2/π)."""
    a = 3.0
    model = nn.Linear(1, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[a], [0.0]], dtype=torch.float64))
    x = torch.tensor([[0.0], [0.4], [-1.0]], dtype=torch.float64)
    features = compute_features(model, x, np.zeros(3, dtype=np.int64), np.arange(3), num_classes=2, samples=4000, eps=1e-5)
    p1 = torch.sigmoid(a * x[:, 0]).numpy()
    expected = np.abs(a * p1 * (1 - p1)) * math.sqrt(2 / math.pi)
    np.testing.assert_allclose(features.sensitivity[:, 0], expected, rtol=0.05)
    np.testing.assert_allclose(features.sensitivity[:, 1], expected, rtol=0.05)  # p0 = 1 − p1 moves as much


def test_runs_in_eval_mode_and_restores_every_modules_training_flag(dataset) -> None:
    inputs, labels = dataset
    model = small_model()
    model.train()
    model[3].eval()  # a mixed state must come back as it was, not as one flag for all
    first = compute_features(model, inputs, labels, np.arange(10), num_classes=CLASSES)
    assert [m.training for m in model] == [True, True, True, False, True]
    # dropout (p=0.5) was off: in training mode two runs would differ
    second = compute_features(model, inputs, labels, np.arange(10), num_classes=CLASSES)
    np.testing.assert_array_equal(first.posteriors, second.posteriors)


def test_softmax_posteriors_match_compute_features(dataset) -> None:
    inputs, labels = dataset
    model = small_model()
    features = compute_features(model, inputs, labels, np.arange(12), num_classes=CLASSES)
    np.testing.assert_allclose(softmax_posteriors(model, inputs, np.arange(12), chunk_size=5), features.posteriors, atol=1e-7)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"samples": 0}, "samples"),
        ({"eps": 0.0}, "eps"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"indices": np.array([0, 60])}, r"\[0, 60\)"),
        ({"indices": np.array([-1, 2])}, r"\[0, 60\)"),
        ({"num_classes": 5}, "logits of shape"),
    ],
)
def test_invalid_arguments_raise_value_error(dataset, changes: dict, message: str) -> None:
    inputs, labels = dataset
    arguments = {"indices": np.arange(5), "num_classes": CLASSES} | changes
    with pytest.raises(ValueError, match=message):
        compute_features(small_model(), inputs, labels, **arguments)


def make_features(n: int, offset: int = 0) -> AttackFeatures:
    rng = np.random.default_rng(n + offset)
    posteriors = rng.dirichlet(np.ones(3), n)
    return AttackFeatures(posteriors, rng.random((n, 3)), rng.integers(0, 3, n), np.arange(n) + offset)


def test_attack_features_subset_concat_one_hot_and_accuracy() -> None:
    first, second = make_features(5), make_features(4, offset=100)
    both = AttackFeatures.concat([first, second])
    assert len(both) == 9 and both.num_classes == 3
    np.testing.assert_array_equal(both.indices, [0, 1, 2, 3, 4, 100, 101, 102, 103])
    picked = both.subset([6, 0])
    np.testing.assert_array_equal(picked.posteriors, both.posteriors[[6, 0]])
    np.testing.assert_array_equal(both.subset(both.indices >= 100).indices, second.indices)
    np.testing.assert_array_equal(both.one_hot().argmax(axis=1), both.labels)
    assert both.one_hot().sum() == 9
    assert both.accuracy() == pytest.approx(np.mean(both.posteriors.argmax(axis=1) == both.labels))


def test_attack_features_reject_inconsistent_shapes() -> None:
    good = make_features(4)
    with pytest.raises(ValueError, match="sensitivity"):
        AttackFeatures(good.posteriors, good.sensitivity[:, :2], good.labels, good.indices)
    with pytest.raises(ValueError, match="labels"):
        AttackFeatures(good.posteriors, good.sensitivity, np.array([0, 1, 2, 3]), good.indices)
    with pytest.raises(ValueError, match="classes"):
        AttackFeatures.concat([good, AttackFeatures(np.full((1, 2), 0.5), np.zeros((1, 2)), [0], [9])])
