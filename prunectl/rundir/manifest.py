"""`manifest.json`: what a run did, section by section, with the hashes that prove it.

The manifest is written last by `prune` (its presence marks the run finished) and then edited
by the later stages, one section at a time, always atomically:

| section      | written by          | holds                                                        |
|--------------|---------------------|--------------------------------------------------------------|
| (top level)  | prune               | stage, versions, recipe hash, data source, split hashes, file hashes, metrics, defense, time |
| `gate`       | gate                | verdict, reason, threshold, deciding attack, audited checkpoint hashes, report hashes |
| `export`     | export              | export directory, source checkpoint hash, file hashes, sizes, parity |
| `quarantine` | compress (failed)   | the same, for a model exported with --export-on-fail          |
| `bench`      | compress            | latency against the dense model                               |
| `release`    | compress            | the verdict, the artifact, headline figures, time per stage   |

`prunectl verify` re-checks every claim against the bytes on disk.
"""

from __future__ import annotations

import json
import platform
from enum import Enum
from pathlib import Path
from typing import Any

from prunectl import __version__
from prunectl.errors import RunDirError
from prunectl.files import atomic_write_json
from prunectl.rundir.layout import MANIFEST


class Section(str, Enum):
    """The manifest's top-level keys."""

    STAGE = "stage"
    VERSIONS = "versions"
    RECIPE_SHA256 = "recipe_sha256"
    DATA_SOURCE = "data_source"
    SPLITS = "splits"
    FILES = "files"
    METRICS = "metrics"
    DEFENSE = "defense"
    BASE_SOURCE = "base_source"
    SECONDS = "seconds"
    INTRA_OP_THREADS = "intra_op_threads"
    GATE = "gate"
    EXPORT = "export"
    QUARANTINE = "quarantine"
    BENCH = "bench"
    RELEASE = "release"


class Stage(str, Enum):
    """How far a run got (`stage`): what `compress` leaves is one of the last three."""

    PRUNED = "pruned"
    RELEASED = "released"
    QUARANTINED = "quarantined"
    GATE_FAILED = "gate-failed"


def library_versions() -> dict[str, str]:
    """The versions that determine a run's numbers, for the manifest and the gate's report.

    onnx and onnxruntime are read from their installed metadata, not imported: importing them
    takes about a second, which `prune` and `gate` (they never export) would pay for a string."""
    import numpy
    import torch

    return {
        "prunectl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "onnx": _installed_version("onnx", ("onnx",)),
        "onnxruntime": _installed_version("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
    }


def _installed_version(module: str, distributions: tuple[str, ...]) -> str:
    """The version of the first installed distribution of `module`; the module's own if none is found."""
    from importlib import import_module, metadata

    for distribution in distributions:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return str(import_module(module).__version__)


class Manifest:
    """A finished run's `manifest.json`: read it, record or forget a section, each change atomic.

    A change re-reads the file first, so two stages holding a `Manifest` of the same run never
    undo each other's sections."""

    def __init__(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.path = Path(run_dir) / MANIFEST
        self.data = data

    @classmethod
    def create(cls, run_dir: Path, data: dict[str, Any]) -> Manifest:
        """Write a new manifest (the last write of a prune: from now on the run is finished)."""
        manifest = cls(run_dir, {Section(key).value: value for key, value in data.items()})
        manifest._write()
        return manifest

    @classmethod
    def read(cls, run_dir: Path) -> Manifest:
        return cls(run_dir, cls._load(Path(run_dir)))

    @staticmethod
    def _load(run_dir: Path) -> dict[str, Any]:
        path = run_dir / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{run_dir} holds an unfinished run (no {MANIFEST})") from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise RunDirError(f"{path} is unreadable ({error}); prune the run again with --overwrite") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{path} is not a JSON object; prune the run again with --overwrite")
        return data

    def get(self, section: Section, default: Any = None) -> Any:
        return self.data.get(section.value, default)

    def __contains__(self, section: Section) -> bool:
        return section.value in self.data

    def record(self, section: Section, payload: Any) -> None:
        """Add or replace one section."""
        self.update({section: payload})

    def update(self, sections: dict[Section, Any]) -> None:
        """Add or replace several sections in one write."""
        self.data = self._load(self.path.parent)
        self.data.update({section.value: payload for section, payload in sections.items()})
        self._write()

    def forget(self, *sections: Section) -> None:
        """Remove sections; absent ones are fine (nothing is written then)."""
        self.data = self._load(self.path.parent)
        present = [section.value for section in sections if section.value in self.data]
        for key in present:
            del self.data[key]
        if present:
            self._write()

    def _write(self) -> None:
        atomic_write_json(self.path, self.data)
