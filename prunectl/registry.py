"""The registry every kind of extension uses (data and model sources, defenses, schedules, ...).

It is `gates.registry.Registry`, the one implementation `gates` and `prunectl` share; this
module adds the `"kind:arg"` source syntax the source registries parse.
"""

from __future__ import annotations

from gates.registry import Registry

__all__ = ["Registry", "split_source"]


def split_source(source: str) -> tuple[str, str | None]:
    """`"kind:arg"` → `("kind", "arg")`; `"kind"` → `("kind", None)`. Used by every source registry."""
    kind, _, arg = source.partition(":")
    return kind, (arg or None)
