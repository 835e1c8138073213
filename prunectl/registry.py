"""A tiny named registry: one per kind of pluggable thing (data, models, defenses, schedules)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prunectl.errors import PrunectlError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to implementations; an unknown name raises an error listing the known ones."""

    def __init__(self, kind: str, error: type[PrunectlError] = PrunectlError) -> None:
        self.kind = kind
        self._error = error
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise self._error(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def split_source(source: str) -> tuple[str, str | None]:
    """`"kind:arg"` → `("kind", "arg")`; `"kind"` → `("kind", None)`. Used by every source registry."""
    kind, _, arg = source.partition(":")
    return kind, (arg or None)
