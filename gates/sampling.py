"""Class-balanced sampling: how evaluation and attack-training sets are drawn (seeds: `gates.seeds`).

An attack evaluated on unbalanced sets can look strong by predicting the majority side, and
one evaluated on sets with different class mixes can look strong by recognising the class.
So every set the gate scores holds as many members as non-members *within each class*.
"""

from __future__ import annotations

import numpy as np


def balanced_by_class(
    first: np.ndarray,
    second: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    per_side: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-size subsets of `first` and `second` with the same count in every class.

    Each class contributes min(count in first, count in second) from each side; with
    `per_side`, those counts shrink proportionally (largest remainders first) to at most
    `per_side` in all. Returned indices are sorted, so the result does not depend on input order.
    """
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    classes = np.union1d(labels[first], labels[second])
    by_class_first = {c: first[labels[first] == c] for c in classes}
    by_class_second = {c: second[labels[second] == c] for c in classes}
    counts = np.array([min(len(by_class_first[c]), len(by_class_second[c])) for c in classes], dtype=np.int64)
    if per_side is not None and counts.sum() > per_side:
        counts = _shrink(counts, per_side)
    picked_first, picked_second = [], []
    for c, k in zip(classes, counts):
        picked_first.append(rng.permutation(by_class_first[c])[:k])
        picked_second.append(rng.permutation(by_class_second[c])[:k])
    return np.sort(np.concatenate(picked_first or [first[:0]])), np.sort(np.concatenate(picked_second or [second[:0]]))


def _shrink(counts: np.ndarray, total: int) -> np.ndarray:
    exact = counts * (total / counts.sum())
    shrunk = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - shrunk), kind="stable")
    for position in order[: total - int(shrunk.sum())]:
        shrunk[position] += 1
    return np.minimum(shrunk, counts)


def stratified_split(indices: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split `indices` into (≈fraction, rest) within every class."""
    indices = np.asarray(indices, dtype=np.int64)
    taken, rest = [], []
    for c in np.unique(labels[indices]):
        members = rng.permutation(indices[labels[indices] == c])
        k = int(round(fraction * len(members)))
        taken.append(members[:k])
        rest.append(members[k:])
    return np.sort(np.concatenate(taken)), np.sort(np.concatenate(rest))
