"""The one fit / evaluate loop: base training, every prune round, shadows and helper models.

Batches carry each sample's dataset index next to its input and label, because defenses
(sliding windows, risky samples) and the gate's leak checks reason about *which* samples a
model saw, not just how many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gates.seeds import derive_seed
from prunectl.data import Dataset
from prunectl.errors import RecipeError
from prunectl.optimizers import OptimizerSettings, make_optimizer


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    n: int


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""`(logits, labels, dataset indices) -> scalar loss`."""

OverridesFn = Callable[[torch.Tensor], dict[str, float] | None]
"""`(dataset indices) -> optimizer settings for this batch only` (e.g. a stronger weight decay)."""

GroupsFn = Callable[[np.ndarray], list[np.ndarray]]
"""`(epoch indices) -> disjoint groups`: no batch mixes samples of two groups (e.g. risky samples)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device = 'cuda' but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def make_generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def iterate_batches(
    data: Dataset,
    indices: np.ndarray | Sequence[int],
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> Iterator[Batch]:
    """Batches over `indices`, shuffled with `generator` when one is given (training)."""
    index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    if generator is not None:
        index = index[torch.randperm(index.numel(), generator=generator)]
    for start in range(0, index.numel(), batch_size):
        yield _batch(data, index[start : start + batch_size], device)


def _batch(data: Dataset, chunk: torch.Tensor, device: torch.device | None) -> Batch:
    x, y = data.x[chunk], data.y[chunk]
    if device is not None and device.type != "cpu":
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return Batch(x, y, chunk)


def grouped_batches(groups: list[np.ndarray], batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled batches that never mix groups, in a shuffled order across groups."""
    batches: list[torch.Tensor] = []
    for group in groups:
        index = torch.as_tensor(np.asarray(group, dtype=np.int64))
        index = index[torch.randperm(index.numel(), generator=generator)]
        batches.extend(index[start : start + batch_size] for start in range(0, index.numel(), batch_size))
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def train_epoch(
    model: nn.Module,
    data: Dataset,
    indices: np.ndarray,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    loss_fn: LossFn = cross_entropy,
    overrides: OverridesFn | None = None,
    groups: GroupsFn | None = None,
    after_backward: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
    on_batch: Callable[[], None] | None = None,
) -> float:
    """One pass over `indices`; returns the mean training loss.

    `after_backward` may edit gradients (masking), `after_step` may edit weights (masking),
    `overrides` may change optimizer settings for one batch (sample-dependent regularisation),
    `groups` keeps samples of different groups out of each other's batches. With one group the
    batches are exactly those of an ungrouped epoch.
    """
    model.train()
    total, count = 0.0, 0
    parts = [g for g in groups(np.asarray(indices, dtype=np.int64)) if len(g)] if groups is not None else []
    if len(parts) > 1:
        batches: Iterator[Batch] = (_batch(data, chunk, device) for chunk in grouped_batches(parts, batch_size, generator))
    else:
        batches = iterate_batches(data, indices, batch_size, generator=generator, device=device)
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch.x), batch.y, batch.indices)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()}; lower the learning rate")
        loss.backward()
        if after_backward is not None:
            after_backward()
        batch_settings = overrides(batch.indices) if overrides is not None else None
        if batch_settings:
            saved = [{k: group[k] for k in batch_settings} for group in optimizer.param_groups]
            for group in optimizer.param_groups:
                group.update(batch_settings)
            optimizer.step()
            for group, old in zip(optimizer.param_groups, saved):
                group.update(old)
        else:
            optimizer.step()
        if after_step is not None:
            after_step()
        total += loss.item() * batch.y.numel()
        count += batch.y.numel()
        if on_batch is not None:
            on_batch()
    return total / max(count, 1)


EVAL_CHUNK = 1024
"""Samples per forward pass when predicting: memory stays flat however many samples are evaluated."""


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, device: torch.device | None = None, chunk: int = EVAL_CHUNK) -> torch.Tensor:
    """Logits of inputs already in memory, `chunk` rows per forward pass."""
    return _chunked_logits(model, (x[i : i + chunk] for i in range(0, x.shape[0], chunk)), device)


@torch.no_grad()
def predict_logits_at(
    model: nn.Module, data: Dataset, indices: np.ndarray | Sequence[int], *, device: torch.device | None = None, chunk: int = EVAL_CHUNK
) -> torch.Tensor:
    """Logits of `data.x[indices]`, gathering one chunk of inputs at a time.

    Only (n, classes) logits grow with the number of samples; gathering every input first
    would hold n copies of an input (31 MB per 10,000 28×28 images, 6 GB at 224×224×3).
    """
    index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    return _chunked_logits(model, (data.x[index[i : i + chunk]] for i in range(0, index.numel(), chunk)), device)


def _chunked_logits(model: nn.Module, chunks: Iterator[torch.Tensor], device: torch.device | None) -> torch.Tensor:
    model.eval()
    device = device or torch.device("cpu")
    outputs = [model(x.to(device)).float().cpu() for x in chunks]
    return torch.cat(outputs) if outputs else torch.empty(0)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, indices: np.ndarray, *, device: torch.device | None = None) -> Evaluation:
    """Accuracy and mean cross-entropy on `indices`, in chunks (see `predict_logits_at`)."""
    index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    if index.numel() == 0:
        return Evaluation(float("nan"), float("nan"), 0)
    logits = predict_logits_at(model, data, index, device=device)
    labels = data.y[index]
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    return Evaluation(accuracy, loss, int(index.numel()))


def fit(
    model: nn.Module,
    data: Dataset,
    indices: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    optimizer: OptimizerSettings,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Plain supervised training from the model's current weights (base and helper models)."""
    model.to(device)
    opt = make_optimizer(model.parameters(), optimizer)
    generator = make_generator(derive_seed(seed, "fit-shuffle"))
    for epoch in range(epochs):
        loss = train_epoch(model, data, indices, opt, batch_size=batch_size, generator=generator, device=device)
        if on_epoch is not None:
            on_epoch(epoch, loss)
    model.eval()
    return model
