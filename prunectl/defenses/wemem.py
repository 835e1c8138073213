"""WeMem (Shang et al., NDSS 2025): weaken memorization during pruning's fine-tuning.

Two primitives driven by memorization scores (`prunectl.memscores`):

- **RSW**, restrained sliding window, against data reuse: within each class the members are
  sorted by score (`h2l`: most memorized first, `l2h`: least), and fine-tuning epoch e (counted
  across rounds) trains on positions [stride·e, stride·e + width) of every class. A sample is
  seen in a few consecutive epochs, not in all of them; the window never wraps, so a class
  whose window has moved past its end sits that epoch out.
- **RMR**, risky memory regularization, against inherent memorability: members whose score is
  at or above the threshold are "risky"; they go in their own batches, and those batches are
  stepped with a much stronger weight decay than the rest (as the reference code does with a
  second optimizer).
- **SWMR**: both.

Default window: width = ⌈n/2⌉ and the stride that brings the last window to the end of the
largest class (n members) in the last epoch, so every member is trained on at least once and
each epoch sees about half the members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gates.lazy import numpy as np
from gates.settings import Rule, at_least, is_integer, setting, within
from prunectl.defenses.base import Defense, DefenseContext, PreflightContext
from prunectl.errors import PrunectlError

if TYPE_CHECKING:
    import numpy as numpy_types
    import torch

    from prunectl.memscores import MemScores

WEMEM_VARIANTS = ("rsw", "rmr", "swmr")
RSW_ORDERS = ("h2l", "l2h")


@dataclass(frozen=True)
class WeMemSettings:
    wemem_variant: str = setting(
        "rmr", help="wemem: {choices} (sliding window | risky-sample weight decay | both)", choices=WEMEM_VARIANTS
    )
    rsw_order: str = setting(
        "h2l", help="rsw: {choices}: windows start at the most memorized members (h2l) or the least (l2h)", choices=RSW_ORDERS
    )
    rsw_width: int = setting(
        0, help="rsw: members per class per epoch (>= 0); 0: half the largest class", rule=at_least(0, note="0: derived from the data")
    )
    rsw_stride: int = setting(
        0,
        help="rsw: window shift per epoch (>= 0); 0: the last epoch's window ends at the last member",
        rule=at_least(0, note="0: derived from the data"),
    )
    rmr_threshold: float = setting(
        0.25,
        help="rmr: members with memorization score >= this are risky, in [-1, 1]",
        rule=within(-1, 1, note="memorization scores lie there", example=0.5),
    )
    rmr_weight_decay: float = setting(
        0.1,
        help="rmr: weight decay on batches of risky members (>= 0); the rest use train.weight_decay",
        rule=at_least(0, integer=False, example=0.1),
    )
    memscore_models: int = setting(
        8,
        help="wemem: helper models on complementary halves of the members (even, >= 4); cached",
        rule=Rule(
            "an even integer >= 4 (complementary halves; 4 is the least that gives a split-half noise estimate)",
            lambda value: is_integer(value) and value >= 4 and value % 2 == 0,
        ),
    )
    memscores: str | None = setting(
        None,
        help="wemem: CSV (index,score) of the members' memorization scores, instead of computing them",
        rule=Rule("a CSV file path, or unset", lambda value: isinstance(value, str) and bool(value)),
        example="scores.csv",
    )


class DefenseSetupError(PrunectlError):
    """Defense settings that cannot work on this data (exit 2)."""


@dataclass(frozen=True)
class Window:
    width: int
    stride: int

    def positions(self, epoch: int) -> tuple[int, int]:
        start = self.stride * epoch
        return start, start + self.width


def derive_window(largest_class: int, total_epochs: int, width: int = 0, stride: int = 0) -> Window:
    """The recipe's window, with 0 meaning "derived"; refuses one that would skip members."""
    if width == 0:
        width = largest_class if total_epochs == 1 else math.ceil(largest_class / 2)
    if stride == 0 and total_epochs > 1:
        stride = max(1, math.ceil((largest_class - width) / (total_epochs - 1)))
    window = Window(width, stride)
    reach = stride * (total_epochs - 1) + width
    if stride > width:
        raise DefenseSetupError(
            f"defense.rsw_stride = {stride} is larger than defense.rsw_width = {width}: members between windows would never be "
            "trained on; use a stride <= the width (or 0 for the derived default)"
        )
    if reach < largest_class:
        raise DefenseSetupError(
            f"the sliding window (width {width}, stride {stride}, {total_epochs} fine-tuning epochs) reaches position {reach} but the "
            f"largest class has {largest_class} members, so some would never be trained on; raise defense.rsw_width or "
            "defense.rsw_stride (0 derives both)"
        )
    return window


def class_orders(members: numpy_types.ndarray, labels: numpy_types.ndarray, scores: numpy_types.ndarray, order: str) -> list[numpy_types.ndarray]:
    """Per class, the members sorted by score (`h2l` descending), ties by dataset index."""
    orders = []
    for cls in np.unique(labels):
        chosen = labels == cls
        idx, sc = members[chosen], scores[chosen]
        key = -sc if order == "h2l" else sc
        orders.append(idx[np.lexsort((idx, key))])
    return orders


class WeMemDefense(Defense):
    """RSW, RMR or both (SWMR), from the recipe's `[defense]` settings."""

    name = "wemem"
    summary = "WeMem: weaken memorization with sliding windows and risky-sample decay (Shang et al. 2025)"
    Settings = WeMemSettings
    uses_memorization_scores = True

    def __init__(self, settings: WeMemSettings | None = None) -> None:
        settings = settings if settings is not None else WeMemSettings()
        super().__init__(settings)
        self.sliding = settings.wemem_variant in ("rsw", "swmr")
        self.regularizing = settings.wemem_variant in ("rmr", "swmr")
        self.window: Window | None = None
        self.orders: list[Any] = []
        self.risky: Any = None  # sorted dataset indices of the risky members, after setup
        self.scores: MemScores | None = None
        self.total_epochs = 0

    @classmethod
    def label(cls, settings: WeMemSettings) -> str:
        return f"wemem {settings.wemem_variant} (memorization scores from {settings.memscore_models} helper models)"

    @classmethod
    def summarize(cls, record: dict[str, Any]) -> str:
        parts = [f"wemem {record['variant']}"]
        if "rsw" in record:
            rsw = record["rsw"]
            parts.append(f"window {rsw['width']} per class, stride {rsw['stride']}, {rsw['order']}")
        if "rmr" in record:
            rmr = record["rmr"]
            parts.append(f"{rmr['risky_members']} risky members (score >= {rmr['threshold']:g}) at weight decay {rmr['weight_decay']:g}")
        scores = record.get("memscores") or {}
        if scores:
            reliability = scores.get("split_half_spearman")
            noise = f", split-half rank correlation {reliability:.2f}" if reliability is not None else ""
            parts.append(f"memorization scores: {scores.get('source')}{noise}")
        return "; ".join(parts)

    def preflight(self, context: PreflightContext) -> None:
        """A given memorization-score file must cover every member."""
        if self.settings.memscores:
            context.read_memorization_scores(self.settings.memscores).lookup(context.members)

    def setup(self, context: DefenseContext) -> None:
        settings = self.settings
        members = np.asarray(context.members, dtype=np.int64)
        self.scores = context.memorization_scores(settings.memscores)
        scores = self.scores.lookup(members)
        labels = context.data.y.numpy()[members]
        self.total_epochs = context.total_epochs
        if self.sliding:
            self.orders = class_orders(members, labels, scores, settings.rsw_order)
            largest = max(len(o) for o in self.orders)
            self.window = derive_window(largest, context.total_epochs, settings.rsw_width, settings.rsw_stride)
        if self.regularizing:
            self.risky = np.sort(members[scores >= settings.rmr_threshold])

    def window_indices(self, epoch: int) -> numpy_types.ndarray:
        """Every class's window for fine-tuning epoch `epoch` (0-based, across rounds)."""
        assert self.window is not None
        start, end = self.window.positions(epoch)
        return np.concatenate([order[start:end] for order in self.orders]).astype(np.int64)

    def epoch_indices(self, epoch: int, members: numpy_types.ndarray) -> numpy_types.ndarray:
        if not self.sliding:
            return members
        return self.window_indices(epoch)

    def batch_groups(self, indices: numpy_types.ndarray) -> list[numpy_types.ndarray]:
        if not self._has_risky():
            return [indices]
        risky = np.isin(indices, self.risky)
        return [indices[~risky], indices[risky]]

    def optimizer_overrides(self, indices: torch.Tensor) -> dict[str, float] | None:
        if not self._has_risky():
            return None
        if np.isin(indices.numpy(), self.risky).all():
            return {"weight_decay": self.settings.rmr_weight_decay}
        return None

    def _has_risky(self) -> bool:
        return self.regularizing and self.risky is not None and len(self.risky) > 0

    def describe(self) -> dict[str, Any]:
        settings = self.settings
        out: dict[str, Any] = {"name": self.name, "variant": settings.wemem_variant}
        if self.sliding and self.window is not None:
            out["rsw"] = {"order": settings.rsw_order, "width": self.window.width, "stride": self.window.stride, "epochs": self.total_epochs}
        if self.regularizing:
            risky = 0 if self.risky is None else int(len(self.risky))
            out["rmr"] = {"threshold": settings.rmr_threshold, "weight_decay": settings.rmr_weight_decay, "risky_members": risky}
        if self.scores is not None:
            out["memscores"] = {**self.scores.describe(), "summary": self.scores.summary(settings.rmr_threshold), "cache": self.scores.cache}
        return out
