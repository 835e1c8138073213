"""Optimizers by name, in one registry: `OPTIMIZERS.get("adam")(parameters, settings)`.

Torch-free at import (the recipe lists the names to validate `train.optimizer`); torch is
imported when an optimizer is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gates.lazy import torch
from prunectl.errors import RecipeError
from prunectl.registry import Registry


@dataclass(frozen=True)
class OptimizerSettings:
    """What the fit loop needs to build an optimizer: base training and fine-tuning differ in lr."""

    name: str
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0


class OptimizerBuilder(Protocol):
    def __call__(self, parameters: Any, settings: OptimizerSettings) -> Any: ...


OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer", RecipeError)


@OPTIMIZERS.decorator("adam")
def adam(parameters: Any, settings: OptimizerSettings) -> Any:
    """Adam with L2 weight decay (`torch.optim.Adam`); `momentum` is not used."""
    return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


@OPTIMIZERS.decorator("sgd")
def sgd(parameters: Any, settings: OptimizerSettings) -> Any:
    """SGD with momentum and weight decay (`torch.optim.SGD`)."""
    return torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def make_optimizer(parameters: Any, settings: OptimizerSettings) -> Any:
    return OPTIMIZERS.get(settings.name)(parameters, settings)
