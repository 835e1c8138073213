"""A named registry, one per kind of extension (attacks, defenses, data and model sources, ...).

An entry is registered either as the object itself (`register`) or as a reference
`"package.module:attribute"` that is imported when the entry is used (`add`). The
references are what keeps a registry's names listable without importing the implementations:
the CLI lists the defenses in `--help` without loading any of them. The layering test reads
the references as imports, so a lazy entry cannot hide an upward dependency.

Names keep their registration order, which is the order help texts and templates list them in.
Owned by `gates` (the bottom of the stack); `prunectl` uses the same class.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to implementations; an unknown name raises `error` listing the known ones."""

    def __init__(self, kind: str, error: type[Exception] = ValueError) -> None:
        self.kind = kind
        self._error = error
        self._items: dict[str, T | str] = {}

    def add(self, name: str, reference: str) -> None:
        """Register `"module:attribute"` under `name`, imported on first use."""
        module, _, attribute = reference.partition(":")
        if not module or not attribute:
            raise ValueError(f"{self.kind} reference {reference!r} must look like 'package.module:attribute'")
        self._claim(name)
        self._items[name] = reference

    def register(self, item: T, name: str | None = None) -> T:
        """Register `item` under `name` (default: its `name` attribute); returns it, so it can decorate."""
        key = name if name is not None else getattr(item, "name", None)
        if not isinstance(key, str) or not key:
            raise ValueError(f"a {self.kind} needs a name: pass name=... or give it a `name` attribute")
        self._claim(key)
        self._items[key] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register an extension of their own clean up with it)."""
        self._items.pop(name, None)

    def decorator(self, name: str) -> Callable[[T], T]:
        """`@registry.decorator("name")` registers the decorated object under `name`."""
        return lambda item: self.register(item, name)

    def get(self, name: str) -> T:
        try:
            item = self._items[name]
        except (KeyError, TypeError):
            raise self._error(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None
        if isinstance(item, str):
            item = self._load(name, item)
        return item

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order, without importing anything."""
        return tuple(self._items)

    def items(self) -> list[tuple[str, T]]:
        """Every entry, loading the lazy ones."""
        return [(name, self.get(name)) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _claim(self, name: str) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

    def _load(self, name: str, reference: str) -> Any:
        # Resolved on every use rather than cached: importing a loaded module is a dict lookup,
        # and the entry then always is what the module holds now.
        module, _, attribute = reference.partition(":")
        return getattr(importlib.import_module(module), attribute)
