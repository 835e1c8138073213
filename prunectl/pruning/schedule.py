"""Sparsity schedules: pure functions `(round k, rounds R, target s) -> sparsity after round k`.

Rounds count from 1; every schedule reaches exactly `s` at `k = R`.
"""

from __future__ import annotations

from collections.abc import Callable

from prunectl.errors import RecipeError
from prunectl.registry import Registry

Schedule = Callable[[int, int, float], float]
SCHEDULES: Registry[Schedule] = Registry("schedule", RecipeError)


def _check(k: int, rounds: int, target: float) -> None:
    if not (1 <= k <= rounds):
        raise ValueError(f"round {k} is outside 1..{rounds}")
    if not (0.0 <= target < 1.0):
        raise ValueError(f"target sparsity {target} is outside [0, 1)")


@SCHEDULES.decorator("geometric")
def geometric(k: int, rounds: int, target: float) -> float:
    """s_k = 1 - (1 - s)^(k/R): every round removes the same fraction of the surviving weights
    (the classic iterative magnitude pruning schedule, Han et al. 2015; Frankle & Carbin 2019)."""
    _check(k, rounds, target)
    return 1.0 - (1.0 - target) ** (k / rounds)


@SCHEDULES.decorator("cubic")
def cubic(k: int, rounds: int, target: float) -> float:
    """s_k = s · (1 - (1 - k/R)^3): prune fast while many redundant weights remain, then slowly
    (Zhu & Gupta 2017, "To prune, or not to prune", with initial sparsity 0)."""
    _check(k, rounds, target)
    return target * (1.0 - (1.0 - k / rounds) ** 3)


@SCHEDULES.decorator("oneshot")
def oneshot(k: int, rounds: int, target: float) -> float:
    """s_k = s: prune to the target at once; later rounds only fine-tune at that sparsity."""
    _check(k, rounds, target)
    return target


def schedule_values(name: str, rounds: int, target: float) -> list[float]:
    schedule = SCHEDULES.get(name)
    return [schedule(k, rounds, target) for k in range(1, rounds + 1)]
