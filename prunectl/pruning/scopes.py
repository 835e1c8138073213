"""Pruning scopes: where the magnitude ranking happens, in one registry.

A scope turns per-layer scores (|weight|, with weights pruned earlier already at -1, so masks
only ever shrink) into keep-masks that remove exactly round(sparsity · n) weights:

- `global`: one ranking across every prunable layer, so layers end up with different sparsities;
- `layerwise`: each layer ranked on its own, so every layer reaches the target.

Ties are broken by position (a stable sort), which makes masks deterministic. Torch-free at
import: the recipe lists the names to validate `prune.scope`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gates.lazy import torch
from prunectl.errors import RecipeError
from prunectl.registry import Registry

Masks = dict[str, Any]
"""Parameter name → boolean tensor of its shape (True = kept)."""


@dataclass(frozen=True)
class Scope:
    """`keep(scores, shapes, sparsity)` returns the masks; `per_layer` says every layer meets the target."""

    name: str
    keep: Callable[[Mapping[str, Any], Mapping[str, Any], float], Masks]
    per_layer: bool


def keep_mask(scores: Any, n_prune: int) -> Any:
    """Keep everything but the `n_prune` lowest scores (flat boolean tensor)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if n_prune > 0:
        order = torch.argsort(scores, stable=True)
        keep[order[:n_prune]] = False
    return keep


def _global(scores: Mapping[str, Any], shapes: Mapping[str, Any], sparsity: float) -> Masks:
    flat = torch.cat(list(scores.values()))
    keep = keep_mask(flat, round(sparsity * flat.numel()))
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = keep[start : start + score.numel()].view(shapes[name])
        start += score.numel()
    return masks


def _layerwise(scores: Mapping[str, Any], shapes: Mapping[str, Any], sparsity: float) -> Masks:
    return {name: keep_mask(score, round(sparsity * score.numel())).view(shapes[name]) for name, score in scores.items()}


STRUCTURES = ("unstructured", "channel")
"""`prune.structure`: single weights set to zero (a size format), or whole channels removed (`prunectl.pruning.channels`)."""

CHANNEL_IMPORTANCES = ("l1", "l2")
"""`prune.importance` for channel pruning: the group magnitude's norm."""

SCOPES: Registry[Scope] = Registry("pruning scope", RecipeError)
SCOPES.register(Scope("global", _global, per_layer=False))
SCOPES.register(Scope("layerwise", _layerwise, per_layer=True))
