"""Atomic file writes: a crash never leaves a file that looks complete but is not.

The bytes go to a temporary file in the destination directory (same file system, so the
rename is atomic), are flushed and fsynced, and only then replace the destination with
`os.replace`. The directory is fsynced afterwards where the platform allows it, so the rename
itself survives a power loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; create the parent directory if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            # mkstemp creates 0600; give the file the mode `open()` would (0666 minus the umask).
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_json(path: Path, payload: Any) -> Path:
    """Write `payload` as indented JSON (UTF-8, trailing newline) atomically."""
    text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
