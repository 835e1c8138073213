"""How the gate draws its sets: class-balanced, disjoint, reproducible."""

from __future__ import annotations

import numpy as np

from gates.sampling import balanced_by_class, stratified_split
from gates.seeds import derive_seed
from gates.shadows import plan_shadows

LABELS = np.repeat(np.arange(3), [50, 30, 20])  # index i has class LABELS[i]


def _class_counts(indices: np.ndarray) -> list[int]:
    return np.bincount(LABELS[indices], minlength=3).tolist()


def test_balanced_sets_hold_as_many_members_as_non_members_in_every_class():
    rng = np.random.default_rng(0)
    first = np.flatnonzero(np.arange(100) % 2 == 0)
    second = np.flatnonzero(np.arange(100) % 2 == 1)
    a, b = balanced_by_class(first, second, LABELS, rng)
    assert _class_counts(a) == _class_counts(b) == [25, 15, 10]
    assert set(a) <= set(first) and set(b) <= set(second)


def test_a_cap_per_side_shrinks_every_class_in_proportion():
    rng = np.random.default_rng(0)
    first, second = np.arange(0, 100, 2), np.arange(1, 100, 2)
    a, b = balanced_by_class(first, second, LABELS, rng, per_side=20)
    assert len(a) == len(b) == 20
    assert _class_counts(a) == _class_counts(b) == [10, 6, 4]


def test_a_class_missing_on_one_side_contributes_nothing():
    rng = np.random.default_rng(0)
    a, b = balanced_by_class(np.arange(0, 50), np.arange(50, 100), LABELS, rng)
    assert len(a) == len(b) == 0


def test_stratified_split_takes_the_fraction_within_every_class():
    taken, rest = stratified_split(np.arange(100), LABELS, 0.2, np.random.default_rng(1))
    assert _class_counts(taken) == [10, 6, 4]
    assert len(np.intersect1d(taken, rest)) == 0 and len(taken) + len(rest) == 100


def test_each_shadow_trains_on_half_the_pool_with_its_own_dev_split_and_keeps_the_rest_out():
    pool = np.arange(100)
    plans = plan_shadows(pool, LABELS, count=3, dev_fraction=0.2, seed=7)
    assert len(plans) == 3
    for plan in plans:
        parts = (plan.members, plan.dev, plan.nonmembers)
        assert sum(len(p) for p in parts) == 100
        assert len(np.unique(np.concatenate(parts))) == 100
        assert len(plan.members) + len(plan.dev) == 50
        assert len(plan.dev) == 10
        assert _class_counts(np.concatenate([plan.members, plan.dev])) == [25, 15, 10]
    assert len({p.seed for p in plans}) == 3
    assert not np.array_equal(plans[0].members, plans[1].members)


def test_shadow_plans_are_reproducible_from_the_seed():
    first = plan_shadows(np.arange(100), LABELS, count=2, dev_fraction=0.2, seed=3)
    again = plan_shadows(np.arange(100), LABELS, count=2, dev_fraction=0.2, seed=3)
    other = plan_shadows(np.arange(100), LABELS, count=2, dev_fraction=0.2, seed=4)
    assert all(np.array_equal(a.members, b.members) and a.seed == b.seed for a, b in zip(first, again))
    assert not np.array_equal(first[0].members, other[0].members)


def test_derived_seeds_are_stable_and_differ_by_purpose():
    assert derive_seed(0, "shadow", 1) == derive_seed(0, "shadow", 1)
    assert len({derive_seed(0, "shadow", 1), derive_seed(0, "shadow", 2), derive_seed(1, "shadow", 1), derive_seed(0, "evaluation")}) == 4


def test_every_character_of_a_tag_counts():
    """The gate's old derivation read a tag's first 8 bytes, so these pairs got one seed."""
    assert derive_seed(0, "memscore-init") != derive_seed(0, "memscore-fit")
    assert derive_seed(0, "shadow-split", 0) != derive_seed(0, "shadow-balance", 0)
    assert all(0 <= derive_seed(s, "x") < 2**32 for s in range(100))


def test_the_gate_and_the_core_derive_seeds_one_way():
    """One function, in the torch-free leaf gates owns: the core imports it, defines none of its own."""
    import gates.sampling
    import prunectl.models
    import prunectl.pipeline
    import prunectl.training
    from gates import gate, shadows

    users = (gate, shadows, prunectl.models, prunectl.pipeline, prunectl.training)
    assert all(module.derive_seed is derive_seed for module in users)
    assert not hasattr(gates.sampling, "derive_seed")
    assert derive_seed(0, "prune") == 3443234804  # the core's derivation, kept: the released models do not change
