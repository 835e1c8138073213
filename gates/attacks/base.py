"""The Attack protocol: fit on shadow features, then score any features (higher = member).

Everything an attack decides — its model weights and its decision threshold — comes from the
shadow features given to `fit`. `score` never learns anything: the gate calls it on the victim's
evaluation samples, and tuning on those would report leakage the attacker could not achieve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from gates.errors import GateInputError
from gates.features import AttackFeatures

EpochCallback = Callable[[int, int], None]
"""`(epochs done, max epochs)`, called after each training epoch (progress bars)."""


@dataclass(frozen=True)
class AttackConfig:
    """Settings shared by every attack; each attack reads the ones it needs."""

    seed: int = 0
    device: str = "cpu"
    samia_max_epochs: int = 40
    samia_patience: int = 5
    samia_max_samples: int = 12000  # shadow rows SAMIA trains on; a class-balanced subsample beyond this
    samia_batch_size: int = 128
    samia_lr: float = 1e-3
    validation_fraction: float = 0.2
    min_per_class: int = 20  # per class and per side, for per-class thresholds

    def __post_init__(self) -> None:
        checks = (
            (self.samia_max_epochs >= 1, "samia_max_epochs", self.samia_max_epochs, "an integer >= 1"),
            (self.samia_patience >= 1, "samia_patience", self.samia_patience, "an integer >= 1"),
            (self.samia_max_samples >= 10, "samia_max_samples", self.samia_max_samples, "an integer >= 10"),
            (self.samia_batch_size >= 2, "samia_batch_size", self.samia_batch_size, "an integer >= 2 (batch norm needs 2)"),
            (self.samia_lr > 0, "samia_lr", self.samia_lr, "a number > 0"),
            (0 < self.validation_fraction < 1, "validation_fraction", self.validation_fraction, "a number in (0, 1), e.g. 0.2"),
            (self.min_per_class >= 1, "min_per_class", self.min_per_class, "an integer >= 1"),
        )
        for ok, name, value, allowed in checks:
            if not ok:
                raise GateInputError(f"attack setting {name} = {value!r} is invalid; use {allowed}")


@runtime_checkable
class Attack(Protocol):
    """A membership-inference attack. `threshold` is on the `score` scale, set by `fit` from shadow data only."""

    name: str
    threshold: float
    threshold_source: str  # how the shadow data set `threshold`, for the report

    def fit(self, features: AttackFeatures, membership: np.ndarray, on_epoch: EpochCallback | None = None) -> None: ...

    def score(self, features: AttackFeatures) -> np.ndarray: ...


def check_training_data(name: str, features: AttackFeatures, membership: ArrayLike) -> np.ndarray:
    """Membership as int64 0/1 aligned with `features`, or a GateInputError naming what is missing."""
    m = np.asarray(membership)
    if m.shape != (len(features),):
        raise GateInputError(
            f"{name}: membership must have one 0/1 entry per shadow sample ({len(features)}), got shape {m.shape}"
        )
    if not np.all((m == 0) | (m == 1)):
        raise GateInputError(f"{name}: membership must contain only 0 (non-member) and 1 (member)")
    m = m.astype(np.int64)
    n_members = int(m.sum())
    if n_members == 0 or n_members == m.size:
        raise GateInputError(
            f"{name}: shadow data needs members and non-members, got {n_members} members of {m.size}; use more shadow data"
        )
    return m
