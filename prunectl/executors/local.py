"""The local executor: the gate's units in a pool of spawned worker processes on this machine.

- **spawn, not fork**: a forked child inherits torch's thread pools and locks mid-state (and
  CUDA cannot fork at all); a spawned one starts clean, imports what it needs and nothing else.
- **The dataset is shared, not copied**: the shared values' tensors are moved into shared memory
  once and handed to each worker when it starts; a unit carries only indices.
- **Signals**: workers ignore SIGINT and SIGTERM from birth (spawned with both blocked). A
  Ctrl-C in the terminal reaches the whole process group, and only prunectl's own process
  decides what happens: it kills every worker (SIGKILL, then waits for them) and ends in its one
  line and 130/143, with no worker tracebacks. A worker whose parent vanished (prunectl killed with SIGKILL) exits within a
  second instead of running on as an orphan.
- **A worker that dies** (killed, out of memory) fails the gate closed: the units it took are
  not retried here, and the gate's verdict is "error" (exit 1), naming how the worker ended.
  A retry on the same machine would most likely meet the same memory limit; `--workers` lower
  is the fix, and the message says so. (The Ray backend retries lost tasks: a lost node there is
  usually not the unit's fault.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch
import torch.multiprocessing  # noqa: F401 - registers the reductions that pass tensors as shared memory

from gates.executor import UNIT_THREADS, OnResult, WorkerLost, run_unit
from prunectl.executors.execution import Execution, available_cores, converted

_VALUES: Mapping[str, Any] = {}
"""In a worker: the shared values it was started with."""


class LocalExecutor:
    """`workers` spawned processes (default: every available core)."""

    name = "local"

    def __init__(self, execution: Execution, device: str = "cpu") -> None:
        self.workers = execution.workers or available_cores()

    def describe(self) -> dict[str, Any]:
        return {"executor": "local", "workers": self.workers, "unit_threads": UNIT_THREADS, "start_method": "spawn"}

    @contextlib.contextmanager
    def open(self, shared: Mapping[str, Any]) -> Iterator[PoolSession]:
        session = PoolSession(self.workers, _in_shared_memory(shared))
        try:
            yield session
        except BaseException:
            session.kill()
            raise
        session.close()


class PoolSession:
    def __init__(self, workers: int, values: Mapping[str, Any]) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(values, os.getpid()),
        )
        self.processes: dict[int, multiprocessing.Process] = {}

    def map(self, function: Callable[[Any], Any], units: Sequence[Any], on_result: OnResult | None = None) -> list[Any]:
        with _stop_signals_blocked():  # the pool spawns its workers here: they start with the mask
            futures = [self.pool.submit(_run_in_worker, function, unit) for unit in units]
        self.processes.update(getattr(self.pool, "_processes", None) or {})
        position = {future: index for index, future in enumerate(futures)}
        results: list[Any] = [None] * len(units)
        pending: set[Future[Any]] = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                self.processes.update(getattr(self.pool, "_processes", None) or {})
                for future in sorted(done, key=position.__getitem__):
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        raise WorkerLost(self._lost(units[position[future]])) from None
                    results[position[future]] = result
                    if on_result is not None:
                        on_result(position[future], result)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        return results

    def _lost(self, unit: Any) -> str:
        codes = [_exit_code_if_dead(process) for process in self.processes.values()]
        ended = [_how_it_ended(code) for code in codes if code not in (None, 0)]
        how = f" ({'; '.join(ended)})" if ended else ""
        return (
            f"a gate worker process died{how} while the pool ran {type(unit).__name__} units; the gate fails closed. "
            f"Rerun it; if memory ran out, use fewer workers (--workers)"
        )

    def kill(self) -> None:
        """Every worker SIGKILLed and reaped: nothing outlives an interrupted gate."""
        self.processes.update(getattr(self.pool, "_processes", None) or {})
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.kill()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.join(timeout=10)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in this thread for the duration, and so in every process it spawns.

    A Ctrl-C reaches the whole process group, workers included, and a worker spends its first
    seconds importing torch, long before `_start_worker` can ignore the signal: born with the
    signals blocked, it holds them pending until it ignores them (which discards them), instead
    of dying with a KeyboardInterrupt traceback. In this process a blocked signal is only
    delayed, never lost: it is delivered when the mask is restored."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _exit_code_if_dead(process: multiprocessing.Process) -> int | None:
    """A dead worker's exit code; None for a live one.

    The pool's own thread reaps dead workers too, and a `waitpid` that loses that race reads as
    "still running" for a moment: a worker whose sentinel says it is gone is given a moment for
    its code to land."""
    if not multiprocessing.connection.wait([process.sentinel], timeout=0):
        return None
    deadline = time.monotonic() + 2.0
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return process.exitcode


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        why = ": killed, e.g. by the out-of-memory killer" if name == "SIGKILL" else ""
        return f"signal {name}{why}"
    return f"exit code {exitcode}"


def _in_shared_memory(shared: Mapping[str, Any]) -> dict[str, Any]:
    """The values with every CPU tensor (also a dataclass's tensor fields, e.g. a Dataset's) copied
    once into shared memory, which the workers then map. A copy, not `share_memory_()` in place:
    that moves the storage and frees the old one under any NumPy view of it (the gate's labels are one)."""
    return {name: _shared_copy(value) for name, value in shared.items()}


def _shared_copy(value: Any) -> Any:
    return converted(value, torch.Tensor, _shared_tensor)


def _shared_tensor(tensor: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(tensor).share_memory_().copy_(tensor) if tensor.device.type == "cpu" else tensor


def _start_worker(values: Mapping[str, Any], parent: int) -> None:
    global _VALUES
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # what arrived while it started is discarded
    torch.set_num_threads(UNIT_THREADS)
    with contextlib.suppress(RuntimeError):  # already set once in this process
        torch.set_num_interop_threads(UNIT_THREADS)
    _VALUES = values
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="prunectl-parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    while True:
        threading.Event().wait(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _run_in_worker(function: Callable[[Any], Any], unit: Any) -> Any:
    return run_unit(function, unit, _VALUES)
