"""No defense: plain fine-tuning, the baseline every defense is measured against."""

from __future__ import annotations

from typing import Any

from prunectl.defenses.base import Defense


class NoDefense(Defense):
    """Every member in every epoch, plain cross-entropy (the base class's hooks, unchanged)."""

    name = "none"
    summary = "plain fine-tuning, no defense"

    @classmethod
    def label(cls, settings: Any) -> str:
        return "no defense"

    @classmethod
    def summarize(cls, record: dict[str, Any]) -> str:
        return "none"
