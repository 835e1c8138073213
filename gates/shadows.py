"""Shadow replicas of the victim: the adaptive attacker's models.

Each shadow takes a class-stratified random half of the shadow pool as its training data
(its own dev split carved from that half in the victim's members:dev ratio) and keeps the
other half as its non-members. It is trained by the victim's own pipeline function, so base
training, every prune round and the defense are exactly the victim's code path, and the
attacker knows the defense.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from gates.progress import Progress, SilentProgress
from gates.sampling import stratified_split
from gates.seeds import derive_seed

ShadowTrainer = Callable[[np.ndarray, np.ndarray, int], tuple[nn.Module, nn.Module]]
"""`(member_indices, dev_indices, seed) -> (base_model, pruned_model)`: the victim's pipeline
with its recipe bound."""


@dataclass(frozen=True, eq=False)
class ShadowPlan:
    """Which samples shadow `index` trains on, selects models with, and holds out."""

    index: int
    seed: int
    members: np.ndarray
    dev: np.ndarray
    nonmembers: np.ndarray


@dataclass(frozen=True, eq=False)
class TrainedShadow:
    plan: ShadowPlan
    base_model: nn.Module
    pruned_model: nn.Module
    seconds: float


def plan_shadows(shadow_pool: np.ndarray, labels: np.ndarray, *, count: int, dev_fraction: float, seed: int) -> tuple[ShadowPlan, ...]:
    """`count` independent random halves of the pool, each with a derived seed."""
    plans = []
    for index in range(count):
        rng = np.random.default_rng(derive_seed(seed, "shadow-split", index))
        trained_on, held_out = stratified_split(shadow_pool, labels, 0.5, rng)
        dev, members = stratified_split(trained_on, labels, dev_fraction, rng)
        plans.append(ShadowPlan(index, derive_seed(seed, "shadow", index), members, dev, held_out))
    return tuple(plans)


def train_shadows(plans: tuple[ShadowPlan, ...], trainer: ShadowTrainer, progress: Progress | None = None) -> list[TrainedShadow]:
    progress = progress or SilentProgress()
    shadows = []
    with progress.task(f"shadow models (0/{len(plans)})", total=len(plans)) as bar:
        for plan in plans:
            started = time.perf_counter()
            base, pruned = trainer(plan.members, plan.dev, plan.seed)
            shadows.append(TrainedShadow(plan, base.eval(), pruned.eval(), time.perf_counter() - started))
            bar.advance(description=f"shadow models ({plan.index + 1}/{len(plans)})")
    return shadows
