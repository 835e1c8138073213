"""What an attacker observes of a model, per sample: posteriors, their sensitivity, the label.

SAMIA (Yuan & Zhang, USENIX Security 2022) reads three numbers per class: the posterior
p_c(x), its sensitivity to small input perturbations, and the one-hot ground-truth label. The
threshold attacks read the posteriors and the label only. Every sample keeps its dataset index,
so the gate can prove that no evaluation sample ever reaches attack training.

Sensitivity of class c (the paper's finite-difference estimate of the input gradient's size):

    s_c(x) = mean over j = 1..m of |p_c(x + eps·u_j) − p_c(x)| / eps,   u_j ~ N(0, I)

Memorised (member) samples sit in flat regions of the loss, so their posteriors move less.

The noise u_j of a sample is drawn from a generator seeded by (seed, dataset index) alone, so a
sample's features do not depend on the chunk size, on the order of `indices`, or on which other
samples are computed with it; they differ across chunk sizes only by float rounding of batched
matrix products (about 1e-7 in a posterior, amplified by 1/eps in a sensitivity).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True, eq=False)
class AttackFeatures:
    """Per-sample attack features of one model on a set of dataset samples (row i ↔ `indices[i]`)."""

    posteriors: np.ndarray  # (n, C) float64 softmax probabilities
    sensitivity: np.ndarray  # (n, C) float64, >= 0
    labels: np.ndarray  # (n,) int64 ground-truth class
    indices: np.ndarray  # (n,) int64 dataset indices (provenance)

    def __post_init__(self) -> None:
        posteriors = np.asarray(self.posteriors, dtype=np.float64)
        sensitivity = np.asarray(self.sensitivity, dtype=np.float64)
        labels = np.asarray(self.labels, dtype=np.int64)
        indices = np.asarray(self.indices, dtype=np.int64)
        if posteriors.ndim != 2 or posteriors.shape[1] < 2:
            raise ValueError(f"posteriors must have shape (n, classes) with classes >= 2, got {posteriors.shape}")
        n, classes = posteriors.shape
        if sensitivity.shape != (n, classes):
            raise ValueError(f"sensitivity must have shape {(n, classes)} like the posteriors, got {sensitivity.shape}")
        if labels.shape != (n,) or indices.shape != (n,):
            raise ValueError(f"labels and indices must have shape ({n},), got {labels.shape} and {indices.shape}")
        if n and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"labels must be class numbers in [0, {classes}), got values in [{labels.min()}, {labels.max()}]")
        for name, value in (("posteriors", posteriors), ("sensitivity", sensitivity), ("labels", labels), ("indices", indices)):
            object.__setattr__(self, name, value)

    @property
    def num_classes(self) -> int:
        return int(self.posteriors.shape[1])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def one_hot(self) -> np.ndarray:
        """(n, C) float64 one-hot encoding of the labels."""
        return np.eye(self.num_classes, dtype=np.float64)[self.labels]

    def accuracy(self) -> float:
        """Fraction of samples whose argmax posterior is the label (NaN for an empty set)."""
        if len(self) == 0:
            return float("nan")
        return float(np.mean(self.posteriors.argmax(axis=1) == self.labels))

    def subset(self, positions: ArrayLike) -> AttackFeatures:
        """The rows at `positions` (integer positions or a boolean mask), as a new AttackFeatures."""
        rows = np.asarray(positions)
        if rows.dtype != np.bool_:
            rows = rows.astype(np.int64, copy=False)
        return AttackFeatures(self.posteriors[rows], self.sensitivity[rows], self.labels[rows], self.indices[rows])

    @classmethod
    def concat(cls, parts: Sequence[AttackFeatures]) -> AttackFeatures:
        """Rows of every part in order (e.g. one part per shadow model); all parts need the same classes."""
        if not parts:
            raise ValueError("concat needs at least one AttackFeatures")
        classes = {p.num_classes for p in parts}
        if len(classes) != 1:
            raise ValueError(f"cannot concatenate features with different numbers of classes: {sorted(classes)}")
        return cls(
            np.concatenate([p.posteriors for p in parts]),
            np.concatenate([p.sensitivity for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.indices for p in parts]),
        )


def compute_features(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: ArrayLike | torch.Tensor,
    indices: ArrayLike,
    *,
    num_classes: int,
    samples: int = 10,
    eps: float = 1e-3,
    seed: int = 0,
    chunk_size: int = 256,
    device: torch.device | str | None = None,
) -> AttackFeatures:
    """Posteriors and sensitivities of `model` on the samples `inputs[indices]`.

    `inputs` and `labels` are the whole dataset; only the rows in `indices` are read, one chunk
    at a time, and no forward pass sees more than `chunk_size` inputs, perturbed or not: memory
    is bounded by chunk_size inputs with their activations (plus one sample's `samples` noise
    directions), whatever the number of samples or perturbations. Only the (n, C) features grow
    with n. The model runs in eval mode under no_grad (each module's training flag is restored
    afterwards) on `device` (default: where its parameters are; the model must already be there).
    Deterministic under `seed`, see the module docstring.
    """
    if samples < 1:
        raise ValueError(f"samples (sensitivity perturbations per input) must be >= 1, got {samples}")
    if not eps > 0:
        raise ValueError(f"eps (perturbation size) must be > 0, got {eps}")
    rows = _check_indices(indices, inputs, chunk_size)
    if not torch.is_floating_point(inputs):
        raise ValueError(f"inputs must be a floating-point tensor to perturb, got {inputs.dtype}")
    all_labels = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    if all_labels.shape != (inputs.shape[0],):
        raise ValueError(f"labels must have one entry per input: shape ({inputs.shape[0]},), got {all_labels.shape}")
    target = _device_of(model, device)
    noise = _NoiseSource(seed, samples)
    posteriors, sensitivity = [], []
    with _eval_mode(model), torch.no_grad():
        for chunk in _chunks(rows, chunk_size):
            x = inputs[torch.from_numpy(chunk)].to(target)
            p = _posteriors(model, x, num_classes)
            moves = _posterior_moves(model, x, p, chunk, noise, eps=eps, rows_per_pass=chunk_size)
            posteriors.append(p.cpu().numpy())
            sensitivity.append((moves.mean(dim=1) / eps).cpu().numpy())
    return AttackFeatures(
        _stack(posteriors, num_classes),
        _stack(sensitivity, num_classes),
        all_labels[rows],
        rows,
    )


def softmax_posteriors(
    model: nn.Module,
    inputs: torch.Tensor,
    indices: ArrayLike,
    chunk_size: int = 256,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """(n, C) float64 softmax posteriors of `model` on `inputs[indices]`, chunk by chunk, in eval mode."""
    rows = _check_indices(indices, inputs, chunk_size)
    target = _device_of(model, device)
    out = []
    with _eval_mode(model), torch.no_grad():
        for chunk in _chunks(rows, chunk_size):
            out.append(_posteriors(model, inputs[torch.from_numpy(chunk)].to(target), None).cpu().numpy())
    if not out:
        raise ValueError("indices is empty: no posteriors to compute")
    return np.concatenate(out)


def _check_indices(indices: ArrayLike, inputs: torch.Tensor, chunk_size: int) -> np.ndarray:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rows = np.asarray(indices)
    if rows.ndim != 1:
        raise ValueError(f"indices must be a 1-D array of dataset indices, got shape {rows.shape}")
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {rows.dtype}")
    rows = rows.astype(np.int64)
    n_total = int(inputs.shape[0])
    if rows.size and (rows.min() < 0 or rows.max() >= n_total):
        raise ValueError(f"indices must lie in [0, {n_total}) (the dataset size), got values in [{rows.min()}, {rows.max()}]")
    return rows


def _chunks(rows: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
    for start in range(0, rows.size, chunk_size):
        yield rows[start : start + chunk_size]


def _posteriors(model: nn.Module, x: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Softmax in float64: differences of posteriors near 0 or 1 keep their digits."""
    logits = model(x)
    if logits.ndim != 2 or (num_classes is not None and logits.shape[1] != num_classes):
        raise ValueError(f"the model must return logits of shape (batch, {num_classes}), got {tuple(logits.shape)}")
    return F.softmax(logits.to(torch.float64), dim=1)


def _posterior_moves(
    model: nn.Module, x: torch.Tensor, p: torch.Tensor, chunk: np.ndarray, noise: _NoiseSource, *, eps: float, rows_per_pass: int
) -> torch.Tensor:
    """|p(x_i + eps·u_ij) − p(x_i)| for every sample i of the chunk and direction j: (chunk, samples, C) float64.

    The chunk × samples perturbed inputs, sample-major, go through the model `rows_per_pass` at a
    time, and each pass draws only the noise of the samples it covers: one batch of every
    perturbation of a 256-sample chunk would hold 2,560 inputs with their activations (~0.5 GB in
    the builtin CNN on 28×28 images). The passes cut that one batch at multiples of
    `rows_per_pass`; at the default 256 the features measured bit-identical to it on the CPU
    (builtin CNN and MLP), other sizes may differ by float rounding (module docstring).
    """
    samples, num_classes = noise.samples, p.shape[1]
    total = len(chunk) * samples
    moves = torch.empty((total, num_classes), dtype=torch.float64, device=p.device)
    for start in range(0, total, rows_per_pass):
        stop = min(start + rows_per_pass, total)
        owners = torch.arange(start, stop, device=x.device) // samples
        directions = torch.empty((stop - start, *x.shape[1:]), dtype=x.dtype)
        for position in range(start // samples, (stop - 1) // samples + 1):
            first = position * samples  # the sample's first row in the chunk's perturbed rows
            low, high = max(start, first), min(stop, first + samples)
            directions[low - start : high - start] = noise.of(int(chunk[position]), x)[low - first : high - first]
        perturbed = directions.to(x.device).mul_(eps).add_(x[owners])
        moves[start:stop] = (_posteriors(model, perturbed, num_classes) - p[owners]).abs()
    return moves.view(len(chunk), samples, num_classes)


class _NoiseSource:
    """The `samples` Gaussian directions of a sample, a function of (seed, dataset index) only.

    Remembers the last sample's directions: a sample whose perturbations straddle two passes of
    `_posterior_moves` is drawn once, not once per pass.
    """

    def __init__(self, seed: int, samples: int) -> None:
        self.seed = seed
        self.samples = samples
        self.generator = torch.Generator(device="cpu")
        self.last: tuple[int, torch.Tensor] | None = None

    def of(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if self.last is None or self.last[0] != index:
            self.last = (index, _noise(self.generator, self.seed, index, self.samples, x))
        return self.last[1]


def _noise(generator: torch.Generator, seed: int, index: int, samples: int, x: torch.Tensor) -> torch.Tensor:
    """The `samples` Gaussian directions of one sample, drawn on the CPU from (seed, dataset index)."""
    state = np.random.SeedSequence([seed % 2**64, index]).generate_state(2, dtype=np.uint32)
    generator.manual_seed((int(state[0]) << 32) | int(state[1]))
    return torch.randn((samples, *x.shape[1:]), generator=generator, dtype=x.dtype)


def _stack(parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, num_classes), dtype=np.float64)


def _device_of(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


class _eval_mode:
    """Eval mode for the duration, then every module's own training flag back (not one flag for all)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.flags = [(module, module.training) for module in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for module, training in self.flags:
            module.training = training
