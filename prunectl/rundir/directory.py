"""Creating, opening and resuming a run directory, and its per-round checkpoints.

`RunDirectory.prepare` is where the run directory's rules live: a finished run is never
overwritten without `--overwrite`, an unfinished one is never silently restarted, and a
directory that cannot be created is refused in one line (`WriteError`) before any work.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from prunectl.errors import ModelError, RunDirError
from prunectl.files import atomic_torch_save, check_writable, make_directory, refused_writes
from prunectl.models import load_tensors_only
from prunectl.rundir.layout import (
    CHECKPOINTS_DIR,
    MANIFEST,
    RECIPE,
    ROUND_CHECKPOINT,
    ROUND_CHECKPOINT_PATTERN,
    RUN_MARKERS,
)

_CHOOSE_ANOTHER = "choose another --out, or a directory you can write to"


class RunDirectory:
    """`runs/<name>/`: recipe, splits, checkpoints, results, and the manifest written last."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def is_finished(self) -> bool:
        return (self.path / MANIFEST).is_file()

    @classmethod
    def open_existing(cls, path: Path) -> RunDirectory:
        run = cls(path)
        if not run.path.is_dir() or not run.file(RECIPE).is_file():
            raise RunDirError(f"{path} is not a prunectl run directory (no {RECIPE}); pass the --out of a prune run")
        return run

    @classmethod
    def open_finished(cls, path: Path) -> RunDirectory:
        run = cls.open_existing(path)
        if not run.is_finished:
            raise RunDirError(f"{path} holds an unfinished run; finish it with prunectl prune --resume {path}")
        return run

    @classmethod
    def check_writable(cls, path: Path) -> None:
        """Refuse an `--out` that cannot be created or written (a `WriteError`), before any work."""
        if Path(path).exists() and not Path(path).is_dir():
            raise RunDirError(f"--out {path} is a file; choose a directory path")
        check_writable(Path(path), "run directory", _CHOOSE_ANOTHER)

    @classmethod
    def prepare(cls, path: Path, *, overwrite: bool, resume: bool) -> RunDirectory:
        """Refuse to clobber a finished run, or to silently restart an unfinished one."""
        run = cls(path)
        if resume:
            if not run.file(RECIPE).is_file():
                raise RunDirError(f"cannot resume {path}: it holds no run ({RECIPE} missing); start it without --resume")
            if run.is_finished:
                raise RunDirError(f"{path} holds a finished run; nothing to resume (use --overwrite to run it again)")
            return run
        if run.path.exists() and not run.path.is_dir():
            raise RunDirError(f"--out {path} is a file; choose a directory path")
        if run.path.is_dir() and any(run.path.iterdir()):
            looks_like_run = any(run.file(marker).exists() for marker in RUN_MARKERS)
            if not looks_like_run:
                raise RunDirError(f"--out {path} is a non-empty directory that is not a prunectl run; choose another --out")
            if not overwrite:
                if run.is_finished:
                    raise RunDirError(f"{path} already holds a finished run; pass --overwrite to replace it or choose another --out")
                raise RunDirError(f"{path} holds an unfinished run; continue it with --resume {path} or start over with --overwrite")
            with refused_writes(path, "remove the previous run in", _CHOOSE_ANOTHER):
                shutil.rmtree(run.path)
        make_directory(run.path, "run directory", _CHOOSE_ANOTHER)
        return run

    # -- per-round checkpoints --------------------------------------------------------------

    def save_checkpoint(self, round_k: int, state: dict[str, Any]) -> None:
        atomic_torch_save(self.checkpoint_dir / ROUND_CHECKPOINT.format(round=round_k), state)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_dir.is_dir():
            return None
        rounds = sorted(
            (int(m.group(1)), p) for p in self.checkpoint_dir.iterdir() if (m := ROUND_CHECKPOINT_PATTERN.search(p.name))
        )
        if not rounds:
            return None
        path = rounds[-1][1]
        try:
            return load_tensors_only(path.read_bytes(), path)
        except (ModelError, OSError) as error:
            raise RunDirError(f"{error}; delete {path.name} to resume from the round before") from None
