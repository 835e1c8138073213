"""Executors for the gate's units (`gates.executor`): a local process pool, or a Ray cluster.

`--executor local` (the default) runs units in `--workers` spawned processes on this machine
(default: every core; 1 runs them in this process). `--executor ray` hands them to Ray
(`pip install 'prunectl[ray]'`), on the cluster `--ray-address` names or on a Ray instance it
starts here. Neither changes a figure: every unit runs at `gates.executor.UNIT_THREADS`
intra-op threads with the seeds it carries.

Each backend is one file here plus one line in :data:`EXECUTORS`.
"""

from __future__ import annotations

from typing import Any

from gates.executor import Executor, InlineExecutor
from prunectl.executors.execution import EXECUTORS, Execution, ExecutorError, available_cores

__all__ = ["EXECUTORS", "Execution", "ExecutorError", "available_cores", "check_execution", "make_executor"]


def make_executor(execution: Execution | None, device: str = "cpu") -> Executor:
    """The backend for `execution` (default: what the environment says, else the local pool on every core)."""
    import importlib

    execution = execution or Execution.from_options()
    if execution.executor == "local" and (execution.workers or available_cores()) == 1:
        return InlineExecutor()
    module, _, name = EXECUTORS[execution.executor].partition(":")
    backend: Any = getattr(importlib.import_module(module), name)
    return backend(execution, device)  # type: ignore[no-any-return]


def check_execution(execution: Execution | None) -> None:
    """Refuse, before any work, an executor that cannot run here: Ray not installed, a cluster
    address nothing answers at (an `ExecutorError`, exit 2)."""
    execution = execution or Execution.from_options()
    if execution.executor == "ray":
        from prunectl.executors.ray import preflight

        preflight(execution)
