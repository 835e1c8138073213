"""Schedules are pure functions that reach the target exactly at the last round."""

import pytest

from prunectl.errors import RecipeError
from prunectl.pruning.schedule import SCHEDULES, cubic, geometric, oneshot, schedule_values


def test_geometric_removes_the_same_fraction_of_survivors_each_round():
    values = schedule_values("geometric", 5, 0.9)
    assert values == pytest.approx([1 - 0.1 ** (k / 5) for k in range(1, 6)])
    survivors = [1 - v for v in [0.0, *values]]
    ratios = [b / a for a, b in zip(survivors, survivors[1:])]
    assert ratios == pytest.approx([0.1 ** 0.2] * 5)


def test_cubic_follows_zhu_and_gupta():
    assert cubic(1, 4, 0.8) == pytest.approx(0.8 * (1 - 0.75**3))
    assert cubic(2, 4, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic(4, 4, 0.8) == pytest.approx(0.8)


def test_oneshot_is_the_target_from_the_first_round():
    assert [oneshot(k, 3, 0.7) for k in (1, 2, 3)] == [0.7, 0.7, 0.7]


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_is_monotone_and_ends_at_the_target(name):
    values = schedule_values(name, 7, 0.95)
    assert values[-1] == pytest.approx(0.95)
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))
    assert all(0.0 <= v < 1.0 for v in values)


def test_single_round_geometric_is_oneshot():
    assert geometric(1, 1, 0.9) == pytest.approx(0.9)


def test_rounds_outside_the_range_are_rejected():
    with pytest.raises(ValueError):
        geometric(0, 5, 0.9)
    with pytest.raises(ValueError):
        cubic(6, 5, 0.9)


def test_unknown_schedule_lists_the_known_ones():
    with pytest.raises(RecipeError, match="geometric, cubic, oneshot"):
        SCHEDULES.get("linear")
