"""Privacy defenses for fine-tuning, in one registry: name → defense class (with its settings).

Add a defense as one file holding one `Defense` subclass (see `prunectl.defenses.base`) and
one line here, or `DEFENSES.register(MyDefense)` from your own code. The recipe's `[defense]`
section, its validation, `prunectl init`'s template and the CLI's choices read names and
settings from here. Listing names imports nothing; reading settings imports the defense
modules, which are torch-free at import (`gates.lazy`), so the CLI stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gates.settings import Declared, build, extension_settings
from prunectl.errors import RecipeError
from prunectl.registry import Registry

if TYPE_CHECKING:
    from prunectl.defenses.base import Defense

DEFENSES: Registry[type[Defense]] = Registry("defense", RecipeError)
DEFENSES.add("none", "prunectl.defenses.none:NoDefense")
DEFENSES.add("kl", "prunectl.defenses.kl:KLDefense")
DEFENSES.add("wemem", "prunectl.defenses.wemem:WeMemDefense")


def defense_settings() -> dict[str, Declared]:
    """Every registered defense's settings by name (each with the defenses that read it)."""
    return extension_settings(DEFENSES.items())


def settings_of(spec: Any) -> Any:
    """The selected defense's settings object, from a recipe's `[defense]` section."""
    defense = DEFENSES.get(spec.name)
    return build(defense.Settings, spec.options) if defense.Settings is not None else None


def make_defense(spec: Any) -> Defense:
    """A fresh defense for a recipe's `[defense]` section."""
    return DEFENSES.get(spec.name)(settings_of(spec))


def defense_label(spec: Any) -> str:
    """A few words naming a recipe's defense and its main setting (reports, summaries)."""
    return DEFENSES.get(spec.name).label(settings_of(spec))


def describe_defense(record: dict[str, Any]) -> str:
    """One line from what a run recorded about its defense (`defense.json`): the settings it used."""
    name = record.get("name", "none")
    return DEFENSES.get(name).summarize(record) if name in DEFENSES else str(name)
