"""Privacy defenses for fine-tuning, in one registry: `DEFENSES.get(name)(recipe) -> Defense`."""

from __future__ import annotations

from collections.abc import Callable

from prunectl.errors import RecipeError
from prunectl.registry import Registry

DEFENSES: Registry[Callable[..., object]] = Registry("defense", RecipeError)


def _none(recipe: object) -> object:
    from prunectl.defenses.base import Defense

    return Defense()


DEFENSES.register("none")(_none)


def make_defense(recipe: object) -> object:
    """The defense object for a recipe (imports lazily: recipe validation stays torch-free)."""
    return DEFENSES.get(recipe.defense.name)(recipe)  # type: ignore[attr-defined]
