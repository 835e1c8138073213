"""The progress interface the library reports through, so it can draw bars without knowing a terminal.

Defined here, in the package that imports nothing of prunectl, so the gate and the core share
one protocol: `prunectl.progress` re-exports it and adds the rich bars the CLI passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class ProgressTask(Protocol):
    def advance(self, steps: int = 1, description: str | None = None) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None) -> AbstractContextManager[ProgressTask]: ...

    def log(self, message: str) -> None: ...


class _SilentTask:
    def advance(self, steps: int = 1, description: str | None = None) -> None:
        pass


class SilentProgress:
    """Reports nothing: the default for library calls."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        yield _SilentTask()

    def log(self, message: str) -> None:
        pass
