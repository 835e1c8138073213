"""The progress interface the gate reports through, so it can draw bars without knowing a terminal.

Structurally the same as `prunectl.progress.Progress` (the gate must not import prunectl):
the CLI passes its rich progress, library calls get the silent default.
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


class _NoTask:
    def advance(self, steps: int = 1, description: str | None = None) -> None:
        pass


class NoProgress:
    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        yield _NoTask()

    def log(self, message: str) -> None:
        pass
