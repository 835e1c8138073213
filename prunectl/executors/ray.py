"""The Ray executor: the gate's units as Ray tasks, on a cluster or on a Ray instance started here.

`pip install 'prunectl[ray]'`, then `--executor ray` (a Ray instance on this machine with
`--workers` CPUs, or the cluster `RAY_ADDRESS` names) or `--executor ray --ray-address auto`
on a node of a running cluster (`host:port` of the head's GCS, or `ray://host:10001` through
the Ray client, work too).

- Nothing leaves the machine: usage statistics are off (`RAY_USAGE_STATS_ENABLED=0`), no
  dashboard is started.
- The shared values (the dataset) go into the object store once (`ray.put`), as NumPy arrays,
  which workers map without copying; a task carries only its unit.
- Each task asks for one CPU (and one GPU when the recipe trains on `cuda`) and runs at the
  units' fixed thread count, so a figure does not depend on the cluster's size or shape.
- A task whose worker died (a node lost, a process killed) is retried, up to three times; its
  seed is in the unit, so the retry computes the same result. A unit's own error is not
  retried: it ends the gate with verdict "error".
- `ray.init` installs signal handlers of its own; prunectl's (Ctrl-C → 130, SIGTERM → 143) are
  put back at once. On either, every pending task is cancelled and a Ray instance started here
  is shut down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gates.executor import UNIT_THREADS, OnResult, WorkerLost, run_unit
from prunectl.errors import one_line
from prunectl.executors.execution import Execution, ExecutorError, available_cores, converted

INSTALL = "pip install 'prunectl[ray]'"
CONNECT_TIMEOUT_S = 5.0
TASK_RETRIES = 3


def _ray() -> Any:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


def _address(execution: Execution) -> str | None:
    return execution.ray_address or os.environ.get("RAY_ADDRESS") or None


def preflight(execution: Execution) -> None:
    """Ray importable and, for a `host:port` address, something listening there (within 5 s)."""
    _ray()
    address = _address(execution)
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address {address!r} is not host:port, ray://host:port or auto; e.g. --ray-address 10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ExecutorError(
            f"cannot reach the Ray cluster at {address} ({reason}): start it with `ray start --head`, "
            "or pass its head node's address to --ray-address (auto on a node of the cluster)"
        ) from None


class RayExecutor:
    name = "ray"

    def __init__(self, execution: Execution, device: str = "cpu") -> None:
        self.execution = execution
        self.gpus = 1 if device.startswith("cuda") else 0

    def describe(self) -> dict[str, Any]:
        return {
            "executor": "ray",
            "workers": self.execution.workers,
            "unit_threads": UNIT_THREADS,
            "address": _address(self.execution),
            "gpus_per_task": self.gpus,
        }

    @contextlib.contextmanager
    def open(self, shared: Mapping[str, Any]) -> Iterator[RaySession]:
        ray = _ray()
        preflight(self.execution)
        started_here = False
        if not ray.is_initialized():
            self._init(ray)
            started_here = True
        try:
            values = ray.put({name: _portable(value) for name, value in shared.items()})
            task = ray.remote(_ray_task).options(num_cpus=1, num_gpus=self.gpus, max_retries=TASK_RETRIES, retry_exceptions=False)
            yield RaySession(ray, task, values, self.execution.workers)
        finally:
            if started_here:
                ray.shutdown()

    def _init(self, ray: Any) -> None:
        address = _address(self.execution)
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
        if address is None:
            options["num_cpus"] = self.execution.workers or available_cores()
        saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            ray.init(address=address, **options)
        except Exception as error:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError...
            raise ExecutorError(
                f"cannot start or join Ray at {address or 'this machine'} ({one_line(str(error))[:300]}); "
                "check --ray-address, or run `ray status` on the cluster"
            ) from None
        finally:
            if threading.current_thread() is threading.main_thread():
                for number, handler in saved.items():
                    signal.signal(number, handler)


class RaySession:
    def __init__(self, ray: Any, task: Any, values: Any, limit: int | None) -> None:
        self.ray, self.task, self.values, self.limit = ray, task, values, limit

    def map(self, function: Callable[[Any], Any], units: Sequence[Any], on_result: OnResult | None = None) -> list[Any]:
        ray = self.ray
        waiting = list(enumerate(units))
        running: dict[Any, int] = {}
        results: list[Any] = [None] * len(units)
        window = self.limit or len(units)
        try:
            while waiting or running:
                while waiting and len(running) < window:
                    position, unit = waiting.pop(0)
                    running[self.task.remote(self.values, function, unit)] = position
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    position = running.pop(ref)
                    results[position] = self._get(ref)
                    if on_result is not None:
                        on_result(position, results[position])
        except BaseException:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        return results

    def _get(self, ref: Any) -> Any:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise RuntimeError(one_line(str(error))[:500]) from None
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError) as error:
            raise WorkerLost(
                f"a Ray worker died {TASK_RETRIES + 1} times running one unit ({type(error).__name__}); the gate fails closed. "
                "Check the cluster's memory (`ray status`)"
            ) from None


@dataclasses.dataclass(frozen=True)
class _Array:
    """A tensor travelling as a NumPy array: the object store maps those without a copy."""

    array: np.ndarray


def _portable(value: Any) -> Any:
    return converted(value, torch.Tensor, lambda tensor: _Array(tensor.detach().cpu().numpy()))


def _restored(value: Any) -> Any:
    return converted(value, _Array, _tensor_of)


def _tensor_of(value: _Array) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only: the units never write to the dataset
        return torch.from_numpy(value.array)


def _ray_task(values: Mapping[str, Any], function: Callable[[Any], Any], unit: Any) -> Any:
    torch.set_num_threads(UNIT_THREADS)
    return run_unit(function, unit, {name: _restored(value) for name, value in values.items()})
