"""What an attacker observes of a model, per sample: posteriors, their sensitivity, the label.

SAMIA (Yuan & Zhang, USENIX Security 2022) reads three numbers per class: the posterior
p_c(x), its sensitivity to small input perturbations, and the one-hot ground-truth label. The
threshold attacks read the posteriors and the label only. Every sample keeps its dataset index,
so the gate can prove that no evaluation sample ever reaches attack training.

Sensitivity of class c (the paper's finite-difference estimate of the input gradient's size):

    s_c(x) = mean over j = 1..m of |p_c(x + eps·u_j) − p_c(x)| / eps,   u_j ~ N(0, I)

Memorised (member) samples sit in flat regions of the loss, so their posteriors move less.

The noise u_j of a sample is a pure function of (seed, dataset index), so a sample's features do
not depend on the chunk size, on the order of `indices`, or on which other samples are computed
with it; they differ across chunk sizes only by float rounding of batched matrix products (about
1e-7 in a posterior, amplified by 1/eps in a sensitivity). The generator is counter based and
runs vectorised on the model's device, a whole forward pass of perturbed rows per call: with
mix = splitmix64's finaliser and γ = 0x9E3779B97F4A7C15 (arithmetic mod 2^64), a D-element
input, Q = ceil(D/2), for sample i and direction j = 0..m−1,

    key_i = mix(mix(seed + γ) + (i + 1)·γ)
    h_jq  = mix(key_i + (j·Q + q + 1)·γ)                      for q = 0..Q−1
    u1    = (low 32 bits of h_jq + 1/2) / 2^32,   θ = 2π · (high 32 bits, signed) / 2^32
    u_j[q] = sqrt(−2 ln u1)·cos θ,   u_j[Q + q] = sqrt(−2 ln u1)·sin θ   (Box–Muller; odd D drops u_j[D])

computed in float32 (float64 for float64 inputs), so |u| ≤ sqrt(66 ln 2) ≈ 6.8. Issue #17
replaced a per-sample reseeded torch generator with it: features computed before that change are
other draws of the same estimator, not equal to today's.
"""

from __future__ import annotations

import math
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
    is bounded by chunk_size inputs with their activations (plus the noise scratch of one pass,
    about four inputs' worth per perturbed row), whatever the number of samples or
    perturbations. Only the (n, C) features grow with n. The model runs in eval mode under
    no_grad (each module's training flag is restored afterwards) on `device` (default: where its
    parameters are; the model must already be there). The perturbed passes share one input
    buffer: a model must not keep its input tensor after the call (copy it if it must).
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
    noise = _GaussianNoise(seed, samples, tuple(inputs.shape[1:]), inputs.dtype, target)
    posteriors, sensitivity = [], []
    with _eval_mode(model), torch.no_grad():
        for chunk in _chunks(rows, chunk_size):
            x = inputs[torch.from_numpy(chunk)].to(target)
            p = _posteriors(model, x, num_classes)
            moves = _posterior_moves(model, x, p, noise.keys(chunk), noise, eps=eps, rows_per_pass=chunk_size)
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


def sensitivity_noise(
    indices: ArrayLike,
    *,
    samples: int,
    shape: Sequence[int],
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(n, samples, *shape) the directions u_j that `compute_features` perturbs `indices` with.

    Row i is a function of (seed, indices[i]) only (module docstring). All n × samples directions
    are returned at once: for inspection and tests, not for large n.
    """
    rows = np.asarray(indices, dtype=np.int64).reshape(-1)
    noise = _GaussianNoise(seed, samples, tuple(shape), dtype, torch.device(device))
    owners = torch.arange(rows.size * samples, device=noise.device)
    directions = noise.rows(noise.keys(rows)[owners // samples], owners % samples)
    return directions.clone().view(rows.size, samples, *shape)


def _posterior_moves(
    model: nn.Module, x: torch.Tensor, p: torch.Tensor, keys: torch.Tensor, noise: _GaussianNoise, *, eps: float, rows_per_pass: int
) -> torch.Tensor:
    """|p(x_i + eps·u_ij) − p(x_i)| for every sample i of the chunk and direction j: (chunk, samples, C) float64.

    The chunk × samples perturbed inputs, sample-major, go through the model `rows_per_pass` at a
    time, and each pass draws only the noise of the rows it covers, in one vectorised call: one
    batch of every perturbation of a 256-sample chunk would hold 2,560 inputs with their
    activations (~0.5 GB in the builtin CNN on 28×28 images). Cutting that one batch into passes
    changes the features only by float rounding of the model's batched products (module
    docstring); the noise of a row is the same bits whatever pass it falls in.
    """
    samples, num_classes = noise.samples, p.shape[1]
    total = len(keys) * samples
    moves = torch.empty((total, num_classes), dtype=torch.float64, device=p.device)
    # One buffer for every pass, and index_select rather than x[owners]: on the CPU a fresh gather
    # per pass cost as much as the MLP's forward (advanced indexing ~10x slower, plus page faults).
    buffer = torch.empty((min(rows_per_pass, total), *x.shape[1:]), dtype=x.dtype, device=x.device)
    for start in range(0, total, rows_per_pass):
        stop = min(start + rows_per_pass, total)
        perturbed_rows = torch.arange(start, stop, device=x.device)
        owners = perturbed_rows // samples
        directions = noise.rows(keys.index_select(0, owners), perturbed_rows % samples)
        perturbed = torch.index_select(x, 0, owners, out=buffer[: stop - start]).add_(directions, alpha=eps)
        moves[start:stop] = (_posteriors(model, perturbed, num_classes) - p.index_select(0, owners)).abs()
    return moves.view(len(keys), samples, num_classes)


_GAMMA = -0x61C8864680B583EB  # 0x9E3779B97F4A7C15, splitmix64's increment, as a signed int64
_MIX1 = -0x40A7B892E31B1A47  # 0xBF58476D1CE4E5B9
_MIX2 = -0x6B2FB644ECCEEE15  # 0x94D049BB133111EB
_LOW32 = 0xFFFFFFFF


def _mix64_(z: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser, in place on int64 bit patterns (products wrap mod 2^64).

    torch's `>>` on int64 is arithmetic: the shifted-in sign bits are masked off to make it the
    logical shift the finaliser needs. `scratch` is a tensor like `z`, overwritten.
    """
    for shift, factor in ((30, _MIX1), (27, _MIX2), (31, None)):
        torch.bitwise_right_shift(z, shift, out=scratch)
        scratch &= (1 << (64 - shift)) - 1
        z ^= scratch
        if factor is not None:
            z *= factor
    return z


def _signed64(value: int) -> int:
    value %= 1 << 64
    return value - (1 << 64) if value >= 1 << 63 else value


class _GaussianNoise:
    """The counter-based Gaussian directions of the module docstring, a whole pass of rows per call.

    Holds the counters (q + 1)·γ of one direction and scratch buffers for the largest pass drawn
    so far; `rows` returns a view of them, valid until the next call.
    """

    def __init__(self, seed: int, samples: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
        self.samples = samples
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.elements = math.prod(shape)
        self.pairs = (self.elements + 1) // 2
        self.work_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        base = torch.tensor([_signed64(int(seed) + _GAMMA)], dtype=torch.int64, device=device)
        self.base = _mix64_(base, torch.empty_like(base))
        self.direction_step = _signed64(self.pairs * _GAMMA)  # Q·γ: from direction j to j + 1
        self.counters = torch.arange(1, self.pairs + 1, dtype=torch.int64, device=device).mul_(_GAMMA)  # (q + 1)·γ
        self.capacity = 0

    def keys(self, indices: np.ndarray) -> torch.Tensor:
        """(n,) int64 key of each dataset index."""
        z = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64)).to(self.device).add(1).mul_(_GAMMA).add_(self.base)
        return _mix64_(z, torch.empty_like(z))

    def rows(self, keys: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """(rows, *shape) direction `directions[r]` of the sample with key `keys[r]`, for every r."""
        n, q = len(keys), self.pairs
        if n > self.capacity:
            self.capacity = n
            self.hashes = torch.empty((n, q), dtype=torch.int64, device=self.device)
            self.scratch = torch.empty_like(self.hashes)
            self.radius = torch.empty((n, q), dtype=self.work_dtype, device=self.device)
            self.angle = torch.empty_like(self.radius)
            self.normals = torch.empty((n, 2 * q), dtype=self.work_dtype, device=self.device)
        z, scratch, radius, angle, out = self.hashes[:n], self.scratch[:n], self.radius[:n], self.angle[:n], self.normals[:n]
        row_keys = directions.mul(self.direction_step).add_(keys)  # key_i + j·Q·γ
        torch.add(row_keys[:, None], self.counters, out=z)  # + (q + 1)·γ
        _mix64_(z, scratch)
        radius.copy_(torch.bitwise_and(z, _LOW32, out=scratch))
        radius.add_(0.5).mul_(2.0**-32).log_().mul_(-2.0).sqrt_()
        angle.copy_(z.bitwise_right_shift_(32)).mul_(2 * math.pi * 2.0**-32)
        torch.cos(angle, out=out[:, :q]).mul_(radius)
        torch.mul(angle.sin_(), radius, out=out[:, q:])
        return out[:, : self.elements].view(n, *self.shape).to(self.dtype)


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
