"""Membership-inference attacks, in one registry: name → factory(AttackConfig) → Attack.

Add an attack by registering its factory in `ATTACKS`; the gate, the recipe validation and the
CLI read the names from here, so no other code lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from gates.attacks.base import Attack, AttackConfig
from gates.attacks.samia import SamiaAttack
from gates.attacks.threshold import SIGNALS, ThresholdAttack
from gates.errors import GateInputError

AttackFactory = Callable[[AttackConfig], Attack]

THRESHOLD_ATTACKS: tuple[str, ...] = ("confidence", "loss", "entropy", "modified_entropy", "top1")
DEFAULT_ATTACKS: tuple[str, ...] = ("samia", *THRESHOLD_ATTACKS)

ATTACKS: dict[str, AttackFactory] = {
    "samia": SamiaAttack,
    **{name: partial(ThresholdAttack, name, SIGNALS[name]) for name in THRESHOLD_ATTACKS},
}


def attack_names() -> tuple[str, ...]:
    """Every registered attack name, in registration order."""
    return tuple(ATTACKS)


def make_attack(name: str, config: AttackConfig | None = None) -> Attack:
    """A fresh, unfitted attack; an unknown name is a GateInputError listing the known ones."""
    try:
        factory = ATTACKS[name]
    except KeyError:
        raise GateInputError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}") from None
    return factory(config if config is not None else AttackConfig())


__all__ = ["ATTACKS", "DEFAULT_ATTACKS", "THRESHOLD_ATTACKS", "Attack", "AttackConfig", "attack_names", "make_attack"]
