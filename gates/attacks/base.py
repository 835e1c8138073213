"""The Attack protocol: fit on shadow features, then score any features (higher = member).

Everything an attack decides — its model weights and its decision threshold — comes from the
shadow features given to `fit`. `score` never learns anything: the gate calls it on the victim's
evaluation samples, and tuning on those would report leakage the attacker could not achieve.

An attack is one class in one file, registered in `gates.attacks` with one line. The class
carries its declaration: `name`, a one-line `summary`, and `Settings`, a frozen dataclass of
:func:`gates.settings.setting` fields (or None). Its settings are keys of the recipe's `[gate]`
section, so each is prefixed with the attack's name (`samia_lr`). The gate builds it as
`AttackClass(settings, context)`.

A *reference* attack (offline RMIA, LiRA) sets `uses_references = True` and reads, instead of
features, each sample's true-class signal under the audited model and under reference models
that never trained on it (:class:`gates.references.ReferenceSignals`). Its `fit` gets shadow
models standing in for the victim (pseudo-targets, with their own members and non-members) and
the population of known non-members; it learns only from those. Its `threshold` stays NaN: the
gate sets its decision thresholds from data no evaluation sample is in (see `gates.gate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from gates.errors import GateInputError
from gates.lazy import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from gates.features import AttackFeatures
    from gates.references import PseudoTarget, ReferenceSignals

EpochCallback = Callable[[int, int], None]
"""`(epochs done, max epochs)`, called after each training epoch (progress bars)."""


@dataclass(frozen=True)
class AttackContext:
    """What every attack gets besides its settings: its own seed, and where to compute."""

    seed: int = 0
    device: str = "cpu"


@runtime_checkable
class Attack(Protocol):
    """A membership-inference attack. `threshold` is on the `score` scale, set by `fit` from shadow data only."""

    name: str
    threshold: float
    threshold_source: str  # how the shadow data set `threshold`, for the report

    def fit(self, features: AttackFeatures, membership: Any, on_epoch: EpochCallback | None = None) -> None: ...

    def score(self, features: AttackFeatures) -> Any: ...


@runtime_checkable
class ReferenceAttack(Protocol):
    """A membership-inference attack that compares the audited model with OUT reference models."""

    name: str
    uses_references: bool  # True
    threshold: float
    threshold_source: str

    def fit(self, pseudo_targets: Sequence[PseudoTarget], population: ReferenceSignals) -> None: ...

    def score(self, samples: ReferenceSignals, population: ReferenceSignals) -> Any: ...


class AttackClass(Protocol):
    """What the registry holds: an attack class and its declaration."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Settings: ClassVar[type | None]

    def __call__(self, settings: Any, context: AttackContext) -> Attack | ReferenceAttack: ...


def check_training_data(name: str, features: AttackFeatures, membership: ArrayLike) -> Any:
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
