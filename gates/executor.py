"""Where the gate's independent units of work run: in this process, a local pool, or a cluster.

A *unit* is a plain function of serialisable inputs (a shadow's plan and the victim's pipeline,
a model to read features from, an attack's training rows) returning serialisable outputs
(features, signals, scores). The gate hands its units to an :class:`Executor`; it never knows
whether they ran here, in worker processes or on a Ray cluster. Backends live in
`prunectl.executors` (`local`, `ray`); this module holds the protocol, the in-process backend
that every other one falls back to for one worker, and the two rules every backend keeps:

- **Fixed threads.** Each unit runs with :data:`UNIT_THREADS` intra-op threads, whatever the
  worker count: torch's float results change with the number of threads, and a gate's figures
  must not depend on how many workers computed them. (Bit-identical holds on the same hardware;
  another CPU may pick other kernels.)
- **Shared data, placed once.** Large read-only values (the dataset) are given to
  :meth:`Executor.open` once and read inside a unit with :func:`shared`; they are never pickled
  into each task.

Results come back in the order of the units, whatever the order of completion.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from gates.lazy import torch

UNIT_THREADS = 1
"""Intra-op threads of every unit (recorded in the gate's settings and the content cache's key)."""

OnResult = Callable[[int, Any], None]
"""Called in the caller's process as each unit finishes: (position in `units`, its result)."""


class WorkerLost(RuntimeError):
    """A worker process died (killed, out of memory) while it ran a unit: the gate fails closed."""


class Session(Protocol):
    """An opened executor: its workers hold the shared values."""

    def map(self, function: Callable[[Any], Any], units: Sequence[Any], on_result: OnResult | None = None) -> list[Any]: ...


class Executor(Protocol):
    """A backend; `describe()` is what the gate's report and the manifest record."""

    def open(self, shared: Mapping[str, Any]) -> AbstractContextManager[Session]: ...

    def describe(self) -> dict[str, Any]: ...


_shared = threading.local()


def shared(name: str) -> Any:
    """The shared value `name` of the executor running the current unit."""
    values = getattr(_shared, "values", None)
    if values is None or name not in values:
        raise RuntimeError(f"no shared value {name!r} here: gates.executor.shared is for units an executor runs")
    return values[name]


@contextlib.contextmanager
def shared_values(values: Mapping[str, Any]) -> Iterator[None]:
    """Make `values` what :func:`shared` returns in this thread for the duration (backends use it)."""
    previous = getattr(_shared, "values", None)
    _shared.values = dict(values)
    try:
        yield
    finally:
        _shared.values = previous


@contextlib.contextmanager
def unit_threads(threads: int = UNIT_THREADS) -> Iterator[None]:
    """Torch's intra-op threads fixed at `threads` for the duration, then restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_unit(function: Callable[[Any], Any], unit: Any, values: Mapping[str, Any]) -> Any:
    """One unit with the shared values installed and the threads fixed: what every backend calls."""
    with shared_values(values), unit_threads():
        return function(unit)


class InlineSession:
    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def map(self, function: Callable[[Any], Any], units: Sequence[Any], on_result: OnResult | None = None) -> list[Any]:
        results = []
        for position, unit in enumerate(units):
            result = run_unit(function, unit, self.values)
            results.append(result)
            if on_result is not None:
                on_result(position, result)
        return results


class InlineExecutor:
    """Every unit in this process, one after another (`--workers 1`; the library's default)."""

    name = "inline"

    @contextlib.contextmanager
    def open(self, shared: Mapping[str, Any]) -> Iterator[Session]:
        yield InlineSession(shared)

    def describe(self) -> dict[str, Any]:
        return {"executor": "local", "workers": 1, "unit_threads": UNIT_THREADS}
