"""Progress reporting that the library can call without knowing about terminals.

The library takes a :class:`Progress` (the protocol lives in `gates.progress`, shared with the
gate); the CLI passes a rich one that draws bars on stderr, tests and the Python API get the
silent default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gates.progress import Progress, ProgressTask, SilentProgress

__all__ = ["Progress", "ProgressTask", "RichProgress", "SilentProgress"]


class _RichTask:
    def __init__(self, progress: object, task_id: object) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        kwargs = {"description": description} if description else {}
        self._progress.update(self._task_id, advance=steps, **kwargs)  # type: ignore[attr-defined]


class RichProgress:
    """Bars on stderr (via rich); finished bars stay visible as a log of what ran."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as _Progress

        self._console = Console(stderr=True)
        self._progress = _Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        task_id = self._progress.add_task(description, total=total)
        yield _RichTask(self._progress, task_id)

    def log(self, message: str) -> None:
        self._progress.console.print(message)
