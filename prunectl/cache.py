"""A content-addressed cache shared by runs and shadows: base models and memorization scores.

An entry's key is the SHA-256 of everything that determines its content (the training
samples' bytes, the model and training settings, the seed, the library versions), so a
second run with the same inputs, a shadow that happens to repeat one, or a benchmark sweeping
defenses (which change only fine-tuning) reuses it, and any change of input misses. Entries
are written atomically: a killed process never leaves one that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunectl import __version__
from prunectl.files import atomic_write_json, check_writable
from prunectl.models import weight_layout

CACHE_ENV = "PRUNECTL_CACHE_DIR"


def default_cache_dir() -> Path:
    """`$PRUNECTL_CACHE_DIR`, else `prunectl/` under the user's cache folder (XDG)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prunectl"


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """The cache root a caller asked for, or the default one."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


FINGERPRINT_CHUNK = 4096


def samples_fingerprint(x: torch.Tensor, y: torch.Tensor, indices: np.ndarray) -> str:
    """SHA-256 of the selected samples' indices, inputs and labels (in that order)."""
    index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    digest = hashlib.sha256()
    digest.update(index.numpy().tobytes())
    for start in range(0, index.numel(), FINGERPRINT_CHUNK):  # the same digest as one update, without a copy of the split
        digest.update(x[index[start : start + FINGERPRINT_CHUNK]].contiguous().numpy().tobytes())
    digest.update(y[index].contiguous().numpy().tobytes())
    return digest.hexdigest()


def training_inputs(recipe: Any, x: torch.Tensor, y: torch.Tensor, members: np.ndarray, *, seed: int, device: str) -> dict[str, Any]:
    """What a model trained from scratch by the recipe depends on: samples (in order), architecture,
    training settings, seed, device, torch's intra-op thread count and the conv weights' layout
    (float results change with both: a model trained at 2 threads, or channels-last, is not the
    one 1 thread, or the plain layout, trains). The base checkpoint plays no part (nothing is
    trained from it)."""
    model = asdict(recipe.model)
    model.pop("checkpoint")
    return {
        "samples_sha256": samples_fingerprint(x, y, members),
        "model": model,
        "weight_layout": weight_layout(recipe.model),
        "train": asdict(recipe.train),
        "seed": seed,
        "device": device,
        "intra_op_threads": torch.get_num_threads(),
    }


def content_key(kind: str, inputs: dict[str, Any]) -> str:
    """The entry name for `inputs` (JSON-serialisable), versioned so an upgrade never reuses stale work."""
    payload = {"kind": kind, "prunectl": __version__, "torch": torch.__version__.split("+")[0], **inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One entry: `path` holds the content, `path.json` what it was computed from."""

    kind: str
    key: str
    path: Path

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "key": self.key, "path": str(self.path)}


class ContentCache:
    """Entries live in `<root>/<kind>/<key><suffix>`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(self, kind: str, inputs: dict[str, Any], suffix: str) -> CacheEntry:
        key = content_key(kind, inputs)
        return CacheEntry(kind, key, self.root / kind / f"{key}{suffix}")

    def check_writable(self) -> None:
        """Refuse, before any work, a cache directory that cannot be created or written
        (a `WriteError` naming it and how to choose another), rather than fail after training."""
        check_writable(self.root, "cache directory", f"pass --cache-dir or set {CACHE_ENV} to a directory you can write to")

    def describe(self, entry: CacheEntry, inputs: dict[str, Any]) -> None:
        """A readable sidecar saying what the entry was computed from (for people, not lookups)."""
        atomic_write_json(entry.path.with_name(entry.path.name + ".json"), {"kind": entry.kind, "key": entry.key, "inputs": inputs})
