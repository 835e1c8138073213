"""Membership-inference attacks, in one registry: name → attack class (with its settings).

Add an attack as one file holding one class (see `gates.attacks.base`) and one line here, or
`ATTACKS.register(MyAttack)` from your own code. The gate, the recipe's `[gate]` section, its
validation, `prunectl init`'s template and the CLI read names and settings from here, so no
other code lists them. Listing names imports nothing; reading settings imports the attack
modules, which are torch-free at import (`gates.lazy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gates.attacks.base import Attack, AttackClass, AttackContext, ReferenceAttack
from gates.errors import GateInputError
from gates.registry import Registry
from gates.settings import Declared, build, declared, extension_settings, invalid_message, problems

ATTACKS: Registry[AttackClass] = Registry("attack", GateInputError)
ATTACKS.add("samia", "gates.attacks.samia:SamiaAttack")
ATTACKS.add("confidence", "gates.attacks.threshold:ConfidenceAttack")
ATTACKS.add("loss", "gates.attacks.threshold:LossAttack")
ATTACKS.add("entropy", "gates.attacks.threshold:EntropyAttack")
ATTACKS.add("modified_entropy", "gates.attacks.threshold:ModifiedEntropyAttack")
ATTACKS.add("top1", "gates.attacks.threshold:Top1Attack")
ATTACKS.add("rmia", "gates.attacks.rmia:RmiaAttack")
ATTACKS.add("lira", "gates.attacks.lira:LiraAttack")

THRESHOLD_ATTACKS: tuple[str, ...] = ("confidence", "loss", "entropy", "modified_entropy", "top1")
FEATURE_ATTACKS: tuple[str, ...] = ("samia", *THRESHOLD_ATTACKS)
"""Attacks that learn from shadow features (`Attack`)."""
REFERENCE_ATTACKS: tuple[str, ...] = ("rmia", "lira")
"""Attacks that compare the audited model with OUT reference models (`ReferenceAttack`)."""
DEFAULT_ATTACKS: tuple[str, ...] = (*FEATURE_ATTACKS, *REFERENCE_ATTACKS)


def attack_names() -> tuple[str, ...]:
    """Every registered attack name, in registration order (imports no attack)."""
    return ATTACKS.names()


def attack_settings() -> dict[str, Declared]:
    """Every registered attack's settings by name (each with the attacks that read it)."""
    return extension_settings(ATTACKS.items())


def attack_settings_of(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The settings object of attack `name` from a section's options (defaults fill gaps), checked."""
    attack = ATTACKS.get(name)
    if attack.Settings is None:
        return None
    settings = build(attack.Settings, options or {})
    for dotted, value, allowed in problems(settings, declared(attack.Settings), prefix="gate."):
        raise GateInputError(invalid_message(dotted, value, allowed))
    return settings


def uses_references(name: str) -> bool:
    """Whether attack `name` reads reference models' signals instead of features (RMIA, LiRA)."""
    return bool(getattr(ATTACKS.get(name), "uses_references", False))


def make_attack(name: str, options: Mapping[str, Any] | None = None, *, seed: int = 0, device: str = "cpu") -> Attack | ReferenceAttack:
    """A fresh, unfitted attack; an unknown name or a refused setting is a GateInputError."""
    attack = ATTACKS.get(name)
    return attack(attack_settings_of(name, options), AttackContext(seed=seed, device=device))


__all__ = [
    "ATTACKS",
    "DEFAULT_ATTACKS",
    "FEATURE_ATTACKS",
    "REFERENCE_ATTACKS",
    "THRESHOLD_ATTACKS",
    "Attack",
    "AttackContext",
    "ReferenceAttack",
    "attack_names",
    "attack_settings",
    "attack_settings_of",
    "make_attack",
    "uses_references",
]
