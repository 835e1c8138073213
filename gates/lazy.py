"""Third-party modules imported the first time they are used.

An extension (an attack here, a defense in `prunectl`) is one file: its settings declaration
and its implementation together. The CLI reads every declaration to print `--help`, to write
`prunectl init`'s template and to refuse a bad value, and each of those must take a fraction
of a second; importing numpy (~0.25 s on a 2-core machine) or torch (~2.5 s) would not allow
it. So extension modules name numpy and torch through :class:`LazyModule`, which imports them
when an attack or defense first runs.

Only third-party modules are named this way. The package's own modules are imported with
`import` statements (inside a function where they are heavy), so that the layering test sees
every dependency between them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for a module until an attribute is read, then forwards to the real one."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_module", None)

    def _load(self) -> ModuleType:
        module = self._module
        if module is None:
            module = importlib.import_module(self._name)
            object.__setattr__(self, "_module", module)
        return module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


numpy = LazyModule("numpy")
torch = LazyModule("torch")
functional = LazyModule("torch.nn.functional")
