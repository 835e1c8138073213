"""What reference-model attacks read: each model's true-class signal on each sample, and who trained on it.

Offline RMIA and LiRA compare how the audited model treats a sample with how reference models
that never trained on it do. The gate's shadows are those references: no shadow ever trains on
the victim's members, holdout or the calibration slice, so for those samples every shadow is an
OUT reference; for a shadow's own data only the shadows whose training split missed it are.

:class:`SignalTable` holds, for a set of dataset indices, each model's true-class probability
p_y and its logit φ = log p_y − log Σ_{c≠y} p_c (the stable form of log(p/(1 − p)): the sum of
the other classes keeps its digits where 1 − p_y would round to 0), and which models trained on
which sample. :meth:`SignalTable.view` cuts from it what one attack reads about some samples
under one target model: :class:`ReferenceSignals`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gates.features import softmax_posteriors

_TINY = 1e-300


def true_class_signals(posteriors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p_y, φ) per row of (n, C) float64 softmax posteriors: the true class's probability and its logit."""
    rows = np.arange(labels.size)
    p_y = posteriors[rows, labels]
    others = posteriors.copy()
    others[rows, labels] = 0.0
    rest = others.sum(axis=1)  # summed directly, not 1 − p_y, which rounds to 0 for confident rows
    logit = np.log(np.maximum(p_y, _TINY)) - np.log(np.maximum(rest, _TINY))
    return p_y, logit


@dataclass(frozen=True, eq=False)
class ReferenceSignals:
    """Samples as a reference attack sees them under one target model (row i ↔ `indices[i]`).

    `confidence`/`logit` are the target model's p_y and φ; `reference_confidence`/`reference_logit`
    (n, R) the same under each reference model, NaN where that reference is not OUT for the
    sample (it trained on it, or it is the target itself).
    """

    confidence: np.ndarray
    logit: np.ndarray
    reference_confidence: np.ndarray
    reference_logit: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def out_count(self) -> np.ndarray:
        """(n,) how many OUT references each sample has."""
        return np.sum(~np.isnan(self.reference_confidence), axis=1)

    def out_mean(self, values: np.ndarray) -> np.ndarray:
        """(n,) the mean of (n, R) `values` over each sample's OUT references (their NaN-free entries); NaN without one."""
        counted = np.sum(~np.isnan(values), axis=1)
        with np.errstate(invalid="ignore"):
            return np.where(counted > 0, np.nansum(values, axis=1) / np.maximum(counted, 1), np.nan)

    def subset(self, rows: np.ndarray) -> ReferenceSignals:
        return ReferenceSignals(
            self.confidence[rows],
            self.logit[rows],
            self.reference_confidence[rows],
            self.reference_logit[rows],
            self.labels[rows],
            self.indices[rows],
        )


@dataclass(frozen=True, eq=False)
class SignalTable:
    """p_y and φ of every model (columns) on every sample (rows), and which model trained on which sample.

    Column r < R is reference model r; the last column is the audited victim model, which trained
    on none of the rows (the gate only puts evaluation, calibration and shadow samples here).
    """

    indices: np.ndarray  # (n,) sorted dataset indices
    labels: np.ndarray  # (n,)
    confidence: np.ndarray  # (n, R + 1)
    logit: np.ndarray  # (n, R + 1)
    trained: np.ndarray  # (n, R + 1) bool: model r trained on (or selected its weights with) sample i

    @property
    def references(self) -> int:
        return int(self.confidence.shape[1]) - 1

    @property
    def victim(self) -> int:
        return self.references

    def view(self, indices: np.ndarray, target: int) -> ReferenceSignals:
        """The rows `indices` (dataset indices, all in the table) under model column `target`."""
        rows = np.searchsorted(self.indices, indices)
        if np.any(rows >= len(self.indices)) or np.any(self.indices[np.minimum(rows, len(self.indices) - 1)] != indices):
            raise ValueError("the signal table holds no row for some requested samples")
        references = [r for r in range(self.references) if r != target]
        out = ~self.trained[np.ix_(rows, references)]
        ref_confidence = np.where(out, self.confidence[np.ix_(rows, references)], np.nan)
        ref_logit = np.where(out, self.logit[np.ix_(rows, references)], np.nan)
        return ReferenceSignals(
            self.confidence[rows, target],
            self.logit[rows, target],
            ref_confidence,
            ref_logit,
            self.labels[rows],
            np.asarray(indices, dtype=np.int64),
        )


def signal_table(
    references: Sequence[nn.Module],
    trained_on: Sequence[np.ndarray],
    victim: nn.Module,
    inputs: torch.Tensor,
    labels: np.ndarray,
    indices: np.ndarray,
    device: torch.device,
) -> SignalTable:
    """One forward pass of every reference model and the victim over `indices` (chunked, no gradients)."""
    rows = np.unique(np.asarray(indices, dtype=np.int64))
    columns = [
        true_class_signals(softmax_posteriors(model, inputs, rows, chunk_size=1024, device=device), labels[rows])
        for model in (*references, victim)
    ]
    return assemble_table(rows, labels[rows], columns, trained_on)


def assemble_table(
    rows: np.ndarray, row_labels: np.ndarray, columns: Sequence[tuple[np.ndarray, np.ndarray]], trained_on: Sequence[np.ndarray]
) -> SignalTable:
    """The table from each model's (true-class probability, logit) on the sorted `rows`: the
    references' columns first, in the order of `trained_on` (their training rows), the victim's last."""
    confidence, logit, trained = [], [], []
    for number, (p_y, phi) in enumerate(columns):
        if number < len(trained_on) and not np.all(np.isfinite(p_y)):
            # NaN marks "not OUT" in a view: a broken reference must stop the gate, not drop out of it
            raise RuntimeError(f"reference model {number} (a shadow) emits non-finite outputs; refusing to score against it")
        confidence.append(p_y)
        logit.append(phi)
        trained.append(np.isin(rows, trained_on[number]) if number < len(trained_on) else np.zeros(len(rows), dtype=bool))
    return SignalTable(rows, row_labels, np.stack(confidence, axis=1), np.stack(logit, axis=1), np.stack(trained, axis=1))


@dataclass(frozen=True, eq=False)
class PseudoTarget:
    """A shadow model standing in for the victim, so a reference attack can tune itself on shadow data.

    `samples` are the shadow's own members and non-members (`membership`, 1 = member) under it,
    each with the other shadows that are OUT for it as references; `population` is the
    calibration slice under the same shadow (OUT for every model).
    """

    samples: ReferenceSignals
    membership: np.ndarray
    population: ReferenceSignals
