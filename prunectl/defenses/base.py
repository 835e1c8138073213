"""The Defense protocol: how a privacy defense hooks into fine-tuning without the engine knowing it.

The engine calls, in order: `setup(context)` once before the first fine-tuning epoch (it may
train helper models with `context.fit`), then per epoch `epoch_indices(epoch, members)` (the
epoch counter runs on across rounds) and `batch_groups(indices)` (samples of different groups
never share a batch), and per batch `batch_loss(logits, labels, indices)` and
`optimizer_overrides(indices)` (optimizer settings for that batch only). The base class is the
undefended behaviour; a defense overrides only the hooks it needs.

A defense is one class in one file, registered in `prunectl.defenses` with one line. The class
carries its declaration: `name`, a one-line `summary`, and `Settings`, a frozen dataclass of
:func:`gates.settings.setting` fields (or None); its settings are keys of the recipe's
`[defense]` section, and the class is built as `DefenseClass(settings)`. The module is imported
to read that declaration whenever a recipe is checked, so it names torch and numpy through
`gates.lazy` and imports heavier parts of prunectl inside the hooks that use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gates.lazy import functional as F
from gates.progress import Progress, SilentProgress

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from prunectl.data import Dataset
    from prunectl.memscores import MemScores
    from prunectl.recipe import Recipe


@dataclass(frozen=True)
class DefenseContext:
    """What a defense may use in `setup`: the data, the splits it trains on, and the fit loop.

    `build_model()` returns a freshly initialised model of the recipe's architecture and
    `fit(model, indices, seed)` trains it with the recipe's base-training settings, so helper
    models use exactly the victim's code path. `memorization_scores(csv_file)` returns the
    members' memorization scores: read from `csv_file` for the victim when one is given, else
    computed by helper models (or found in the content cache). `victim` is False for shadows
    (they never see the victim's files); `cache_dir` is the shared content cache.
    """

    recipe: Recipe
    data: Dataset
    members: np.ndarray
    dev: np.ndarray
    seed: int
    device: torch.device
    total_epochs: int
    build_model: Callable[[int], nn.Module]
    fit: Callable[[nn.Module, np.ndarray, int], nn.Module]
    base_model: nn.Module
    memorization_scores: Callable[[str | None], MemScores]
    victim: bool = False
    cache_dir: Path | None = None
    progress: Progress = field(default_factory=SilentProgress)


@dataclass(frozen=True)
class PreflightContext:
    """What a defense may check before any work: the victim's members, and a reader for a
    memorization-score file (so a file that does not cover them is refused before training)."""

    members: np.ndarray
    read_memorization_scores: Callable[[str], MemScores]


class Defense:
    """No defense: every member in every epoch, plain cross-entropy, no per-batch settings."""

    name: ClassVar[str] = "none"
    summary: ClassVar[str] = "plain fine-tuning"
    Settings: ClassVar[type | None] = None
    uses_memorization_scores: ClassVar[bool] = False
    """True when `setup` asks for `memorization_scores`: the gate then trains a shadow's helper
    models as units of their own, spread over its workers (`prunectl.stages.gate`)."""

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings

    @classmethod
    def label(cls, settings: Any) -> str:
        """A few words naming the defense and its main setting, before it runs."""
        return cls.name

    @classmethod
    def summarize(cls, record: dict[str, Any]) -> str:
        """One line from what `describe()` recorded after the run (the settings it actually used)."""
        return str(record.get("name", cls.name))

    def preflight(self, context: PreflightContext) -> None:
        """Refuse settings that cannot work on the victim's data, before anything is trained or written."""

    def setup(self, context: DefenseContext) -> None:
        """Called once before fine-tuning (again after a resume, so keep it deterministic)."""

    def epoch_indices(self, epoch: int, members: np.ndarray) -> np.ndarray:
        """Dataset indices to train on in fine-tuning epoch `epoch` (0-based, across rounds)."""
        return members

    def batch_groups(self, indices: np.ndarray) -> list[np.ndarray]:
        """Disjoint groups of `indices` that must not share a batch (one group: plain shuffling)."""
        return [indices]

    def batch_loss(self, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def optimizer_overrides(self, indices: torch.Tensor) -> dict[str, float] | None:
        """Optimizer settings (e.g. `{"weight_decay": 5e-3}`) for this batch only, or None."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the run directory records about the defense."""
        return {"name": self.name}
