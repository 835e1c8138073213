"""The run directory: atomic writes, per-round checkpoints, and the finished/unfinished rule.

A run is *finished* when `manifest.json` exists; it is written last, so a killed run never looks
finished. Every file is written to a temporary name in the same directory, fsync'd and renamed,
so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from exporters.atomic import atomic_write_bytes
from prunectl.errors import ModelError, RunDirError
from prunectl.models import load_tensors_only

MANIFEST = "manifest.json"
RECIPE = "recipe.toml"
CHECKPOINT_PATTERN = re.compile(r"round-(\d+)\.pt$")
RUN_MARKERS = (MANIFEST, RECIPE, "splits.json")


__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_torch_save", "atomic_write_text", "file_sha256", "replace_directory", "RunDirectory"]


def replace_directory(new: Path, target: Path) -> None:
    """Swap `new` into `target`'s place; the old directory is removed only after the rename,
    so a crash leaves either the complete old set of files or the complete new one."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (checkpoints and models can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(path: Path, payload: Any) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class RunDirectory:
    """`runs/<name>/`: recipe, splits, checkpoints, results, and the manifest written last."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def is_finished(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def file(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def open_existing(cls, path: Path) -> RunDirectory:
        run = cls(path)
        if not path.is_dir() or not (path / RECIPE).is_file():
            raise RunDirError(f"{path} is not a prunectl run directory (no {RECIPE}); pass the --out of a prune run")
        return run

    @classmethod
    def prepare(cls, path: Path, *, overwrite: bool, resume: bool) -> RunDirectory:
        """Refuse to clobber a finished run, or to silently restart an unfinished one."""
        run = cls(path)
        if resume:
            if not (path / RECIPE).is_file():
                raise RunDirError(f"cannot resume {path}: it holds no run ({RECIPE} missing); start it without --resume")
            if run.is_finished:
                raise RunDirError(f"{path} holds a finished run; nothing to resume (use --overwrite to run it again)")
            return run
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {path} is a file; choose a directory path")
        if path.is_dir() and any(path.iterdir()):
            looks_like_run = any((path / marker).exists() for marker in RUN_MARKERS)
            if not looks_like_run:
                raise RunDirError(f"--out {path} is a non-empty directory that is not a prunectl run; choose another --out")
            if not overwrite:
                if run.is_finished:
                    raise RunDirError(f"{path} already holds a finished run; pass --overwrite to replace it or choose another --out")
                raise RunDirError(
                    f"{path} holds an unfinished run; continue it with --resume {path} or start over with --overwrite"
                )
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return run

    # -- per-round checkpoints --------------------------------------------------------------

    def save_checkpoint(self, round_k: int, state: dict[str, Any]) -> None:
        atomic_torch_save(self.checkpoint_dir / f"round-{round_k}.pt", state)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_dir.is_dir():
            return None
        rounds = sorted(
            (int(m.group(1)), p) for p in self.checkpoint_dir.iterdir() if (m := CHECKPOINT_PATTERN.search(p.name))
        )
        if not rounds:
            return None
        path = rounds[-1][1]
        try:
            return load_tensors_only(path.read_bytes(), path)
        except (ModelError, OSError) as error:
            raise RunDirError(f"{error}; delete {path.name} to resume from the round before") from None
