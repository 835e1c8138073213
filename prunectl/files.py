"""Writing files so that a crash, a full disk or a read-only directory never leaves a half-made one.

Every file prunectl writes goes through here: the bytes go to a temporary file beside the
destination, are fsynced and renamed over it (`exporters.atomic`), so a killed process leaves
the old file or the new one, never part of one. A write the operating system refuses (no space
left, a read-only file system, no permission) becomes a :class:`WriteError`: one line naming
the path and what to do, exit code 2, instead of a traceback.

Torch is imported only to serialise tensors (`atomic_torch_save`), so the torch-free layers
(`prunectl init`) can write through here too.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exporters import atomic
from gates.lazy import torch
from prunectl.errors import PrunectlError


class WriteError(PrunectlError):
    """The operating system refused to create or write a file or directory (exit 2)."""


_ADVICE = {
    errno.ENOSPC: "free some space (or choose another location) and run again",
    errno.EDQUOT: "the disk quota is exhausted; free some space (or choose another location) and run again",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.EACCES: "permission denied; choose a location you can write to, or fix its permissions",
    errno.EPERM: "permission denied; choose a location you can write to, or fix its permissions",
    errno.ENOENT: "a directory on the way cannot be created there; choose an existing, writable location",
    errno.ENOTDIR: "a part of the path is a file, not a directory; choose another location",
}


USER_FIXABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
"""OSErrors a user fixes (space, a read-only mount, permissions): bad input wherever they surface, not a bug."""


def describe_os_error(error: OSError, path: Path | str, doing: str = "write", fix: str | None = None) -> str:
    """`cannot write PATH (No space left on device); free some space ...`: what failed, why, the fix.

    `fix` replaces the generic advice where the caller knows the option that chooses the path."""
    reason = error.strerror or type(error).__name__
    advice = _ADVICE.get(error.errno or 0, "check the path and its permissions")
    return f"cannot {doing} {path} ({reason}); {fix or advice}"


@contextmanager
def refused_writes(path: Path | str, doing: str = "write", fix: str | None = None) -> Iterator[None]:
    """Turn an OSError raised inside the block into a one-line :class:`WriteError` about `path`."""
    try:
        yield
    except OSError as error:
        raise WriteError(describe_os_error(error, error.filename or path, doing, fix)) from None


def make_directory(path: Path, what: str = "directory", fix: str | None = None) -> Path:
    """`mkdir -p path`, refused in one line when the operating system will not create it."""
    with refused_writes(path, f"create the {what}", fix):
        path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(path: Path, what: str, fix: str | None = None) -> None:
    """Refuse, before any work, a directory that could not be created or written into.

    Nothing is left behind: a probe directory is made where `path` is (or would be created)
    and removed again. It catches what permission bits alone do not show, such as a read-only
    mount or `/proc`, where even root cannot create anything."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise WriteError(f"cannot create the {what} {path}: {existing} is a file, not a directory; {fix or _ADVICE[errno.ENOTDIR]}")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".prunectl-probe-"))
    except OSError as error:
        doing = f"create the {what}" if existing != path else f"write into the {what}"
        raise WriteError(describe_os_error(error, path, doing, fix)) from None


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    with refused_writes(path):
        return atomic.atomic_write_bytes(Path(path), data)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(path: Path, payload: Any) -> Path:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (checkpoints and models can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_directory(new: Path, target: Path) -> None:
    """Swap `new` into `target`'s place; the old directory is removed only after the rename,
    so a crash leaves either the complete old set of files or the complete new one."""
    old = target.with_name(f".{target.name}.old")
    with refused_writes(target, "replace"):
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
