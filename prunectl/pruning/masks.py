"""Which weights are prunable, magnitude masks with exact counts, and measured sparsity.

Masks are plain boolean tensors keyed by the parameter's fully qualified name (True = kept).
They live only during fine-tuning: the weights themselves hold the zeros, so the saved
state_dict has the model's own keys and no `weight_orig`/`weight_mask` pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from prunectl.errors import ModelError, SparsityCheckError
from prunectl.pruning.scopes import SCOPES, Masks

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
PRUNABLE_SCRIPT_NAMES = {"Linear", "Conv1d", "Conv2d", "Conv3d"}


def is_prunable(module: nn.Module) -> bool:
    if isinstance(module, PRUNABLE_TYPES):
        return True
    # TorchScript modules keep the original class name.
    return getattr(module, "original_name", None) in PRUNABLE_SCRIPT_NAMES


def prunable_weight_names(model: nn.Module, *, keep_first_dense: bool = False, keep_last_dense: bool = False) -> list[str]:
    """Names of conv and linear weights in module order, minus the layers kept dense."""
    names = [
        f"{module_name}.weight" if module_name else "weight"
        for module_name, module in model.named_modules()
        if is_prunable(module) and isinstance(getattr(module, "weight", None), torch.Tensor)
    ]
    if keep_first_dense:
        names = names[1:]
    if keep_last_dense:
        names = names[:-1]
    if not names:
        raise ModelError("the model has no prunable conv or linear weights (after keeping first/last layers dense)")
    return names


def compute_masks(weights: Mapping[str, torch.Tensor], sparsity: float, scope: str, previous: Masks | None = None) -> Masks:
    """Prune exactly round(sparsity · n) weights by magnitude, within `scope` (`prunectl.pruning.scopes`).

    Weights pruned in an earlier round stay pruned (they rank below everything), so masks only
    ever shrink.
    """
    scores = {}
    for name, weight in weights.items():
        score = weight.detach().abs().float().flatten().cpu()
        if previous is not None and name in previous:
            score = torch.where(previous[name].flatten(), score, torch.full_like(score, -1.0))
        scores[name] = score
    return SCOPES.get(scope).keep(scores, {name: weight.shape for name, weight in weights.items()}, sparsity)


@torch.no_grad()
def apply_masks(parameters: Mapping[str, torch.Tensor], masks: Masks) -> None:
    """Zero the pruned weights in place."""
    for name, mask in masks.items():
        parameters[name].mul_(mask.to(parameters[name].device, parameters[name].dtype))


@torch.no_grad()
def mask_gradients(parameters: Mapping[str, torch.Tensor], masks: Masks) -> None:
    """Zero the gradients of pruned weights so optimizer state (momentum, Adam moments) stays clean."""
    for name, mask in masks.items():
        grad = parameters[name].grad
        if grad is not None:
            grad.mul_(mask.to(grad.device, grad.dtype))


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    zeros: int
    numel: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Sparsity measured from weights. The global figure's denominator is stated explicitly."""

    layers: tuple[LayerSparsity, ...]

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def global_sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    denominator: str = "weights of the pruned conv and linear layers (no biases, no normalisation, no layers kept dense)"

    def to_dict(self) -> dict[str, object]:
        return {
            "global_sparsity": self.global_sparsity,
            "zeros": self.zeros,
            "numel": self.numel,
            "denominator": self.denominator,
            "layers": [
                {"name": layer.name, "sparsity": layer.sparsity, "zeros": layer.zeros, "numel": layer.numel}
                for layer in self.layers
            ],
        }


def measure_sparsity(state_dict: Mapping[str, torch.Tensor], names: list[str]) -> SparsityReport:
    return SparsityReport(
        tuple(LayerSparsity(name, int((state_dict[name] == 0).sum()), state_dict[name].numel()) for name in names)
    )


def check_sparsity(report: SparsityReport, target: float, scope: str, tolerance: float = 0.005) -> None:
    """The engine's guarantee: the saved weights hit the target, else the run fails."""
    if abs(report.global_sparsity - target) > tolerance:
        raise SparsityCheckError(
            f"achieved global sparsity {report.global_sparsity:.4f} misses the target {target:.4f} "
            f"by more than {tolerance * 100:.1f} points"
        )
    if SCOPES.get(scope).per_layer:
        for layer in report.layers:
            allowed = max(tolerance, 1.0 / layer.numel)
            if abs(layer.sparsity - target) > allowed:
                raise SparsityCheckError(
                    f"layer {layer.name} has sparsity {layer.sparsity:.4f}, target {target:.4f} (allowed ±{allowed:.4f})"
                )
