"""One way to derive a seed for each purpose, shared by the gate and the core.

Every random draw in a run — a shadow's split, its initialisation, a feature's noise, a
bootstrap, a fine-tuning shuffle — takes its own sub-seed from the run's seed and a tag naming
the purpose, so adding a draw in one place shifts no other, and every unit of work can be
recomputed on its own (a shadow, a helper model) from its inputs alone.

The sub-seed is the first 32 bits (little-endian) of SHA-256 over the seed and the tags joined
by ':', each written with `str`. Every character of every tag counts: `"memscore-init"` and
`"memscore-fit"` get different seeds (an earlier version in `gates` read only a tag's first 8
bytes, which made them collide). Torch-free and numpy-free: it is a foundation.
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *tags: object) -> int:
    """A stable sub-seed in [0, 2**32) for the purpose named by `tags`."""
    digest = hashlib.sha256(":".join(map(str, (seed, *tags))).encode()).digest()
    return int.from_bytes(digest[:4], "little")
