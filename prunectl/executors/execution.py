"""How to run the gate's units (`Execution`), told apart from the backends that do it."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prunectl.config import EXECUTOR_ENV, RAY_ADDRESS_ENV, WORKERS_ENV
from prunectl.errors import PrunectlError

EXECUTORS = {"local": "prunectl.executors.local:LocalExecutor", "ray": "prunectl.executors.ray:RayExecutor"}
"""Backend name → `module:class`; the class takes (execution, device). One line per backend."""



class ExecutorError(PrunectlError):
    """The executor asked for cannot run here (Ray missing, a cluster unreachable): exit 2."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Execution:
    """How to run the gate's units. Not part of the recipe: it never changes a result.

    `workers` None means every available core (local) or as many tasks as the cluster takes at
    once (ray); `ray_address` None with `executor = "ray"` starts a Ray instance on this machine
    (or joins the one `RAY_ADDRESS` names, as `ray.init` does).
    """

    executor: str = "local"
    workers: int | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ExecutorError(f"unknown executor {self.executor!r}; choose one of: {', '.join(EXECUTORS)}")
        if self.workers is not None and self.workers < 1:
            raise ExecutorError(f"workers must be >= 1 (got {self.workers}); 1 runs every unit in this process")
        if self.ray_address is not None and self.executor != "ray":
            raise ExecutorError("--ray-address needs --executor ray (or leave --executor unset: an address implies ray)")

    @classmethod
    def from_options(cls, executor: str | None = None, workers: int | None = None, ray_address: str | None = None) -> Execution:
        """Flags over `PRUNECTL_EXECUTOR`, `PRUNECTL_WORKERS`, `PRUNECTL_RAY_ADDRESS`; an address alone implies ray."""
        address = ray_address or os.environ.get(RAY_ADDRESS_ENV) or None
        chosen = executor or os.environ.get(EXECUTOR_ENV) or ("ray" if address else "local")
        count: int | None = workers
        if count is None and os.environ.get(WORKERS_ENV):
            text = os.environ[WORKERS_ENV]
            try:
                count = int(text)
            except ValueError:
                raise ExecutorError(f"{WORKERS_ENV}={text!r} is not a whole number of workers; set it to e.g. 2, or unset it") from None
        return cls(chosen, count, address)


def converted(value: Any, kind: type, convert: Callable[[Any], Any]) -> Any:
    """`value` with `convert` applied to it if it is a `kind`, else to each of its dataclass fields
    that is (a shallow copy): how a backend moves a shared dataset's tensors in and out of its store."""
    if isinstance(value, kind):
        return convert(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = copy.copy(value)
        for item in dataclasses.fields(value):
            if isinstance(getattr(value, item.name), kind):
                object.__setattr__(value, item.name, convert(getattr(value, item.name)))
    return value
