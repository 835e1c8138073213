"""KL posterior balancing (Yuan & Zhang, USENIX Security 2022, "pair-based posterior balancing").

Pruning's fine-tuning sharpens the posteriors of training members more than those of unseen
samples; membership attacks read that gap. The defense adds λ · KL(P_a ‖ P_b) to the
cross-entropy, where P_a and P_b are the softmax of the *sorted* (descending) logits of the
first and second half of the batch, paired sample by sample. Sorting removes the class, so the
term only asks that any two samples' confidence profiles look alike.

Computed in log space (log-softmax on both sides, `log_target=True`): a softmax that underflows
to 0 would make `log(p)` infinite and the loss NaN within a few steps on a saturated model. The
log-probabilities are also clamped from below, which bounds the term's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gates.lazy import functional as F
from gates.lazy import torch
from gates.settings import setting, within
from prunectl.defenses.base import Defense

if TYPE_CHECKING:
    import torch as torch_types

LOG_PROB_FLOOR = -30.0
"""exp(-30) ≈ 1e-13: classes below it contribute nothing measurable, and the gradient stays bounded."""


@dataclass(frozen=True)
class KLSettings:
    kl_weight: float = setting(
        4.0,
        help="kl: weight of the KL term between sorted posteriors of paired samples, in [0, 1000] (paper: 1-16)",
        rule=within(0, 1000, example=4),
    )


def sorted_log_posteriors(logits: torch_types.Tensor) -> torch_types.Tensor:
    """Log-softmax of each row's logits sorted high to low, floored at `LOG_PROB_FLOOR`."""
    ordered = torch.sort(logits.float(), dim=1, descending=True).values
    return F.log_softmax(ordered, dim=1).clamp(min=LOG_PROB_FLOOR)


def pair_kl(logits: torch_types.Tensor) -> torch_types.Tensor:
    """Mean KL(P_first ‖ P_second) over the pairs (i, i + n/2) of a batch; 0 for a batch of one.

    With an odd batch the last sample has no partner and takes part in the cross-entropy only.
    """
    half = logits.shape[0] // 2
    if half == 0:
        return logits.new_zeros(())
    log_p = sorted_log_posteriors(logits[:half])
    log_q = sorted_log_posteriors(logits[half : 2 * half])
    # F.kl_div(input, target) = KL(target ‖ input): the first half is the target distribution.
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


class KLDefense(Defense):
    """Cross-entropy + `kl_weight` × pair KL of sorted posteriors; weight 0 is exactly no defense."""

    name = "kl"
    summary = "KL posterior balancing (Yuan & Zhang 2022)"
    Settings = KLSettings

    def __init__(self, settings: KLSettings | None = None) -> None:
        settings = settings if settings is not None else KLSettings()
        super().__init__(settings)
        self.weight = float(settings.kl_weight)

    @classmethod
    def label(cls, settings: KLSettings) -> str:
        return f"kl (weight {settings.kl_weight:g})"

    @classmethod
    def summarize(cls, record: dict[str, Any]) -> str:
        return f"kl (weight {record['kl_weight']:g})"

    def batch_loss(self, logits: torch_types.Tensor, labels: torch_types.Tensor, indices: torch_types.Tensor) -> torch_types.Tensor:
        loss = F.cross_entropy(logits, labels)
        if self.weight == 0:
            return loss
        return loss + self.weight * pair_kl(logits)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kl_weight": self.weight}
