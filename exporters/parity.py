"""Parity: does the ONNX model compute what the torch model computes?

Both run the same batch; we compare logits (max and mean absolute difference) and the
predicted class. A changed argmax only counts against parity when the reference's top two
logits are further apart than twice the tolerance: when they are closer, rounding within the
tolerance can legitimately swap them, and refusing such an export would reject correct
models on ties.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ParityReport:
    """Agreement between reference logits and candidate logits on `samples` inputs.

    `reference_max_abs` is the largest |logit| of the reference, the scale against which an
    absolute difference must be read (randomly initialised torchvision nets, for example, emit
    logits near 1e-10, where any tolerance passes trivially).
    `tolerance` is the allowed max absolute logit difference and `passed` the verdict;
    both are None for a report-only comparison (INT8 against fp32, where differences of
    quantisation size are expected and the accuracy report is what matters).
    """

    samples: int
    reference_max_abs: float
    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    argmax_mismatches: int
    near_tie_mismatches: int
    finite: bool
    tolerance: float | None
    passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for error messages."""
        return (
            f"max |logit diff| {self.max_abs_diff:.3g} (tolerance {self.tolerance}; logits up to {self.reference_max_abs:.3g}), "
            f"argmax agreement {self.argmax_agreement:.4f} on {self.samples} inputs "
            f"({self.argmax_mismatches - self.near_tie_mismatches} mismatches that are not near-ties)"
            + ("" if self.finite else ", non-finite outputs")
        )


def compare_logits(reference: np.ndarray, candidate: np.ndarray, tolerance: float | None) -> ParityReport:
    """Compare two [N, C] logit arrays; `tolerance=None` reports without a verdict."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {candidate.shape}")
    if reference.ndim != 2 or reference.shape[0] == 0:
        raise ValueError(f"expected [N, C] logits with N > 0, got shape {reference.shape}")
    finite = bool(np.isfinite(reference).all() and np.isfinite(candidate).all())
    diff = np.abs(reference - candidate)
    max_diff = float(np.nanmax(diff)) if finite else float("inf")
    mean_diff = float(np.nanmean(diff)) if finite else float("inf")
    ref_arg = reference.argmax(axis=1)
    cand_arg = candidate.argmax(axis=1)
    mismatch = ref_arg != cand_arg
    near_ties = 0
    if mismatch.any() and tolerance is not None and reference.shape[1] > 1:
        top2 = np.sort(reference, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        near_ties = int((mismatch & (margin <= 2 * tolerance)).sum())
    mismatches = int(mismatch.sum())
    passed = None
    if tolerance is not None:
        passed = finite and max_diff <= tolerance and mismatches == near_ties
    return ParityReport(
        samples=int(reference.shape[0]),
        reference_max_abs=float(np.nanmax(np.abs(reference))) if finite else float("inf"),
        max_abs_diff=max_diff,
        mean_abs_diff=mean_diff,
        argmax_agreement=1.0 - mismatches / reference.shape[0],
        argmax_mismatches=mismatches,
        near_tie_mismatches=near_ties,
        finite=finite,
        tolerance=tolerance,
        passed=passed,
    )


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of [N, C] logits against [N] integer labels."""
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels).reshape(-1)).mean())


def run_session(session: Any, inputs: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits from an onnxruntime session, in chunks (bounded memory for large checks)."""
    name = session.get_inputs()[0].name
    chunks = [session.run(None, {name: inputs[i : i + batch_size]})[0] for i in range(0, len(inputs), batch_size)]
    return np.concatenate(chunks, axis=0)
