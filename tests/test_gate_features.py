"""gates.features: posteriors, sensitivities and provenance of the attack features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from conftest import BatchRecorder
from gates.features import AttackFeatures, compute_features, sensitivity_noise, softmax_posteriors

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



# ------------------------------------------------------------------------------ the noise directions

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def splitmix64_finaliser(z: int) -> int:
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def reference_noise(seed: int, index: int, direction: int, elements: int) -> list[float]:
    """The module docstring's formula in plain Python integers and math."""
    pairs = (elements + 1) // 2
    key = splitmix64_finaliser(splitmix64_finaliser(seed + GAMMA) + (index + 1) * GAMMA)
    cos, sin = [], []
    for q in range(pairs):
        h = splitmix64_finaliser(key + (direction * pairs + q + 1) * GAMMA)
        low, high = h & 0xFFFFFFFF, h >> 32
        high -= (high >= 1 << 31) << 32
        radius = math.sqrt(-2 * math.log((low + 0.5) / 2**32))
        angle = 2 * math.pi * high / 2**32
        cos.append(radius * math.cos(angle))
        sin.append(radius * math.sin(angle))
    return (cos + sin)[:elements]


@pytest.mark.parametrize("seed", [0, 7, -3, 2**63 + 5, 2**70 + 1])
def test_the_noise_is_the_documented_counter_based_formula(seed: int) -> None:
    indices, samples, shape = np.array([0, 5, 123456789]), 3, (3, 3)  # 9 elements: an odd count drops a sine
    noise = sensitivity_noise(indices, samples=samples, shape=shape, seed=seed, dtype=torch.float64)
    assert noise.shape == (3, samples, *shape) and noise.dtype == torch.float64
    expected = [[reference_noise(seed, int(i), j, 9) for j in range(samples)] for i in indices]
    np.testing.assert_allclose(noise.reshape(3, samples, 9).numpy(), np.array(expected), rtol=1e-12, atol=1e-12)
    single = sensitivity_noise(indices, samples=samples, shape=shape, seed=seed)  # float32: the same draws, rounded
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), noise.numpy(), rtol=1e-5, atol=1e-5)


def test_seeds_are_taken_mod_2_to_the_64() -> None:
    first = sensitivity_noise([4, 9], samples=2, shape=(5,), seed=-1)
    np.testing.assert_array_equal(first.numpy(), sensitivity_noise([4, 9], samples=2, shape=(5,), seed=2**64 - 1).numpy())


def test_the_noise_is_standard_gaussian_and_uncorrelated() -> None:
    n, samples, elements = 2000, 5, 41  # an odd element count: the last pair's sine is dropped
    noise = sensitivity_noise(np.arange(n), samples=samples, shape=(elements,), seed=3, dtype=torch.float64).numpy()
    values = noise.ravel()
    count = values.size
    assert np.isfinite(values).all() and np.abs(values).max() <= math.sqrt(66 * math.log(2))
    assert abs(values.mean()) < 5 / math.sqrt(count)
    assert abs(values.var() - 1) < 5 * math.sqrt(2 / count)
    assert abs(np.mean(values**4) - 3) < 5 * math.sqrt(96 / count)  # Var(z^4) = 105 − 9
    assert abs(np.mean(values**3)) < 5 * math.sqrt(15 / count)
    assert stats.kstest(values, "norm").pvalue > 1e-3
    # every element position, taken over samples and directions, is standard on its own
    per_position = noise.reshape(n * samples, elements)
    assert np.abs(per_position.mean(axis=0)).max() < 5 / math.sqrt(n * samples)
    assert np.abs(per_position.var(axis=0) - 1).max() < 5 * math.sqrt(2 / (n * samples))

    def uncorrelated(a: np.ndarray, b: np.ndarray) -> None:
        a, b = a.ravel(), b.ravel()
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(a.size), "correlated noise"

    pairs = (elements + 1) // 2
    uncorrelated(noise[..., :-1], noise[..., 1:])  # neighbouring elements
    uncorrelated(noise[..., : elements - pairs], noise[..., pairs:])  # the cosine and the sine of one pair
    uncorrelated(noise[:, :-1], noise[:, 1:])  # directions of one sample
    uncorrelated(noise[:-1], noise[1:])  # neighbouring dataset indices
    uncorrelated(noise[..., : elements - pairs] ** 2, noise[..., pairs:] ** 2)  # independent, not just uncorrelated
    other_seed = sensitivity_noise(np.arange(n), samples=samples, shape=(elements,), seed=4, dtype=torch.float64).numpy()
    assert not np.array_equal(noise, other_seed)
    uncorrelated(noise, other_seed)  # the same indices under another seed


def test_two_indices_or_two_seeds_draw_different_noise() -> None:
    same = sensitivity_noise([10, 10, 11], samples=4, shape=(2, 8), seed=1).numpy()
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.allclose(same[0], same[2])
    assert not np.allclose(same[0], sensitivity_noise([10], samples=4, shape=(2, 8), seed=2).numpy()[0])
    assert not np.allclose(same[0, 0], same[0, 1])  # nor do two directions of one sample


class InputRecorder(nn.Module):
    """Keeps a copy of every batch it is given; its logits depend on the input, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, CLASSES)
        self.batches: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.detach().clone())
        return self.linear(x.flatten(1))


@pytest.mark.parametrize(("chunk_size", "order"), [(256, "sorted"), (7, "sorted"), (3, "reversed"), (1, "shuffled"), (4, "shuffled")])
def test_a_samples_noise_is_the_same_bits_in_any_chunk_order_or_company(chunk_size: int, order: str) -> None:
    """Zero inputs and eps = 1: the perturbed inputs the model sees are the noise itself, bit for bit."""
    samples, shape = 5, (2, 3)
    inputs, labels = torch.zeros(40, *shape), torch.zeros(40, dtype=torch.int64)
    indices = np.arange(3, 40, 2)
    indices = {"sorted": indices, "reversed": indices[::-1], "shuffled": np.random.default_rng(chunk_size).permutation(indices)}[order]
    model = InputRecorder()
    compute_features(model, inputs, labels, indices, num_classes=CLASSES, samples=samples, eps=1.0, seed=11, chunk_size=chunk_size)
    seen = torch.cat(model.batches).flatten(1)
    perturbed = seen[seen.abs().sum(dim=1) > 0]  # the clean passes are the zero rows
    assert perturbed.shape[0] == len(indices) * samples
    expected = sensitivity_noise(indices, samples=samples, shape=shape, seed=11)
    np.testing.assert_array_equal(perturbed.view(len(indices), samples, *shape).numpy(), expected.numpy())


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
