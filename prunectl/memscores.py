"""Memorization scores (Feldman & Zhang 2020), estimated from models trained on halves of the members.

mem(i) = P[model correct on i | i in its training subset] − P[correct on i | i not in it].
A score near 1 marks a sample the model gets right only by having seen it (memorized, the
samples membership attacks find); near 0 a sample any model of the recipe gets right or wrong
anyway.

The K helper models come in complementary pairs: a random half of the members and the other
half. Every member is therefore in exactly K/2 training subsets and out of exactly K/2, so no
sample lacks either estimate (independent random halves leave some samples never in or never
out of any subset, whose score would be undefined). The price is quantisation: scores move in
steps of 2/K. The estimator's noise is reported as the split-half rank correlation: the scores
from the first half of the pairs against those from the second half.

Scores are cached by content (`prunectl.cache`), so the victim, every shadow and every defense
setting with the same members, architecture, training settings, K and seed compute them once.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gates.seeds import derive_seed
from prunectl.cache import CacheEntry, ContentCache, training_inputs
from prunectl.data import Dataset
from prunectl.errors import PrunectlError
from prunectl.files import atomic_write_bytes, atomic_write_text
from prunectl.progress import Progress, SilentProgress
from prunectl.recipe import Recipe
from prunectl.training import predict_logits_at

CACHE_KIND = "memscores"
CSV_HEADER = ("index", "score")


class MemscoreError(PrunectlError):
    """A memorization-score file that cannot be used as given (exit 2)."""


@dataclass(frozen=True, eq=False)
class MemScores:
    """Scores for a set of dataset indices (sorted ascending), and how they were obtained."""

    indices: np.ndarray
    values: np.ndarray
    models: int | None
    split_half_spearman: float | None
    source: str
    origin: str | None = None
    cache: dict[str, Any] | None = None
    """The content-cache entry they came from or went to (kind, key, path, hit), when a cache was used."""

    def lookup(self, indices: np.ndarray) -> np.ndarray:
        """Scores of `indices`, in their order; every index must have one (no silent default)."""
        wanted = np.asarray(indices, dtype=np.int64)
        position = np.searchsorted(self.indices, wanted)
        position = np.clip(position, 0, max(len(self.indices) - 1, 0))
        found = (self.indices[position] == wanted) if len(self.indices) else np.zeros(len(wanted), dtype=bool)
        if not found.all():
            missing = wanted[~found]
            where = f" in {self.origin}" if self.origin else ""
            raise MemscoreError(
                f"no memorization score{where} for {len(missing)} of the {len(wanted)} members (e.g. dataset index {int(missing[0])}); "
                "compute them for this recipe with `prunectl memscore`"
            )
        return self.values[position]

    def summary(self, threshold: float | None = None) -> dict[str, Any]:
        values = self.values
        quantiles = np.quantile(values, [0.1, 0.5, 0.9]).tolist() if len(values) else [math.nan] * 3
        out: dict[str, Any] = {
            "samples": int(len(values)),
            "mean": float(values.mean()) if len(values) else math.nan,
            "p10": quantiles[0],
            "median": quantiles[1],
            "p90": quantiles[2],
            "distinct_values": int(len(np.unique(values))),
        }
        if threshold is not None:
            out["at_or_above_threshold"] = int((values >= threshold).sum())
            out["threshold"] = threshold
        return out

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "origin": self.origin, "models": self.models, "split_half_spearman": self.split_half_spearman}


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Rank correlation with average ranks for ties (scores are quantised); None if either is constant."""
    from scipy.stats import spearmanr

    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(spearmanr(a, b).statistic)


BuildModel = Callable[[int], nn.Module]
FitModel = Callable[[nn.Module, np.ndarray, int], nn.Module]


@dataclass(frozen=True, eq=False)
class HelperOutcomes:
    """Per helper model (rows) and member (columns): was it in the model's half, did the model get it right."""

    members: np.ndarray
    included: np.ndarray
    correct: np.ndarray

    def scores(self, rows: slice = slice(None)) -> np.ndarray:
        return _scores(self.correct[rows], self.included[rows])


@dataclass(frozen=True, eq=False)
class HelperPlan:
    """One helper model: its row among the K, the positions (into the sorted members) of its
    training half, and its seeds. A plan is all a helper needs, so each can be trained anywhere."""

    row: int
    chosen: np.ndarray
    init_seed: int
    fit_seed: int


def plan_helpers(member_count: int, *, models: int, seed: int) -> list[HelperPlan]:
    """The `models` helpers' halves of `member_count` sorted members, in complementary pairs (rows 2p, 2p+1)."""
    if models < 2 or models % 2:
        raise ValueError(f"memorization scores need an even number of models >= 2, got {models}")
    rng = np.random.default_rng(derive_seed(seed, "memscore-halves"))
    plans = []
    for pair in range(models // 2):
        order = rng.permutation(member_count)
        for side, chosen in enumerate((order[: member_count // 2], order[member_count // 2 :])):
            init, fit = (derive_seed(seed, f"memscore-{what}", pair, side) for what in ("init", "fit"))
            plans.append(HelperPlan(2 * pair + side, chosen, init, fit))
    return plans


def train_helper(data: Dataset, members: np.ndarray, plan: HelperPlan, *, build_model: BuildModel, fit: FitModel, device: torch.device) -> np.ndarray:
    """Train one helper on its half of the sorted `members`: whether it gets each member right."""
    model = build_model(plan.init_seed)
    fit(model, members[plan.chosen], plan.fit_seed)
    predictions = predict_logits_at(model, data, members, device=device).argmax(dim=1)
    return (predictions == data.y[torch.as_tensor(members)]).numpy()


def collect(members: np.ndarray, plans: list[HelperPlan], correct: list[np.ndarray]) -> HelperOutcomes:
    """The helpers' outcomes as one table, from their plans and `train_helper` results (in plan order)."""
    included = np.zeros((len(plans), len(members)), dtype=bool)
    table = np.zeros((len(plans), len(members)), dtype=bool)
    for plan, row in zip(plans, correct, strict=True):
        included[plan.row, plan.chosen] = True
        table[plan.row] = row
    return HelperOutcomes(members, included, table)


def train_helpers(
    data: Dataset,
    members: np.ndarray,
    *,
    models: int,
    seed: int,
    build_model: BuildModel,
    fit: FitModel,
    device: torch.device,
    progress: Progress | None = None,
) -> HelperOutcomes:
    """Train `models` helper models on complementary halves of `members`, one after another here
    (the gate runs a shadow's helpers as units of their own: `prunectl.stages.gate`)."""
    progress = progress or SilentProgress()
    members = np.sort(np.asarray(members, dtype=np.int64))
    plans = plan_helpers(len(members), models=models, seed=seed)
    correct = []
    with progress.task(f"memorization scores ({models} models on halves of {len(members)} members)", total=models) as bar:
        for plan in plans:
            correct.append(train_helper(data, members, plan, build_model=build_model, fit=fit, device=device))
            bar.advance()
    return collect(members, plans, correct)


def estimate(outcomes: HelperOutcomes) -> MemScores:
    """Score every member from its helper models' outcomes, with the split-half noise estimate."""
    models = outcomes.included.shape[0]
    half = 2 * (models // 4)
    split_half = spearman(outcomes.scores(slice(0, half)), outcomes.scores(slice(half, models))) if models >= 4 else None
    return MemScores(outcomes.members, outcomes.scores(), models, split_half, "computed")


def _scores(correct: np.ndarray, included: np.ndarray) -> np.ndarray:
    n_in, n_out = included.sum(axis=0), (~included).sum(axis=0)
    if (n_in == 0).any() or (n_out == 0).any():
        # Complementary halves make this impossible; a score from one side only would be a guess.
        raise AssertionError("a member was never in (or never out of) a helper model's training half")
    p_in = (correct & included).sum(axis=0) / n_in
    p_out = (correct & ~included).sum(axis=0) / n_out
    return (p_in - p_out).astype(np.float64)


def cache_inputs(recipe: Recipe, data: Dataset, members: np.ndarray, *, models: int, seed: int, device: torch.device) -> dict[str, Any]:
    """Everything the scores depend on: the members' bytes, architecture, training, K, seed, device."""
    ordered = np.sort(np.asarray(members, dtype=np.int64))
    return {**training_inputs(recipe, data.x, data.y, ordered, seed=seed, device=device.type), "members": int(len(members)), "models": models}


def cache_entry(recipe: Recipe, data: Dataset, members: np.ndarray, *, seed: int, device: torch.device, cache_dir: Path) -> tuple[CacheEntry, dict[str, Any]]:
    """The content-cache entry of the scores a pipeline with seed `seed` uses, and what keys it
    (at this process's thread count: call it where the helpers train, or under the same count)."""
    inputs = cache_inputs(recipe, data, members, models=recipe.defense.memscore_models, seed=helper_seed(seed), device=device)
    return ContentCache(cache_dir).entry(CACHE_KIND, inputs, ".npz"), inputs


def helper_seed(seed: int) -> int:
    """The helpers' seed, from the pipeline's (the run's, or a shadow's)."""
    return derive_seed(seed, "memscore")


def store(entry: CacheEntry, inputs: dict[str, Any], scores: MemScores, cache_dir: Path) -> MemScores:
    """Write `scores` to the cache entry (atomically) and return them with the entry recorded."""
    buffer = io.BytesIO()
    split_half = math.nan if scores.split_half_spearman is None else scores.split_half_spearman
    np.savez(buffer, indices=scores.indices, values=scores.values, models=np.int64(scores.models), split_half=np.float64(split_half))
    atomic_write_bytes(entry.path, buffer.getvalue())
    ContentCache(cache_dir).describe(entry, inputs)
    cache_record = {**entry.to_dict(), "hit": False}
    return MemScores(scores.indices, scores.values, scores.models, scores.split_half_spearman, "computed", str(entry.path), cache_record)


def cached_estimate(
    recipe: Recipe,
    data: Dataset,
    members: np.ndarray,
    *,
    seed: int,
    build_model: BuildModel,
    fit: FitModel,
    device: torch.device,
    cache_dir: Path | None,
    progress: Progress | None = None,
) -> tuple[MemScores, CacheEntry | None, bool]:
    """Scores from the cache, else estimated and stored; returns (scores, entry, was_cached).

    `seed` is the pipeline's seed (the run's, or a shadow's), so a run and `prunectl memscore`
    for the same recipe share one entry. K is the recipe's `defense.memscore_models`.
    """
    if cache_dir is not None:
        entry, inputs = cache_entry(recipe, data, members, seed=seed, device=device, cache_dir=cache_dir)
        if entry.exists:
            return dataclasses.replace(_read_entry(entry), cache={**entry.to_dict(), "hit": True}), entry, True
    models = recipe.defense.memscore_models
    outcomes = train_helpers(data, members, models=models, seed=helper_seed(seed), build_model=build_model, fit=fit, device=device, progress=progress)
    scores = estimate(outcomes)
    if cache_dir is None:
        return scores, None, False
    return store(entry, inputs, scores, cache_dir), entry, False


def _read_entry(entry: CacheEntry) -> MemScores:
    with np.load(entry.path, allow_pickle=False) as stored:
        split_half = float(stored["split_half"])
        return MemScores(
            stored["indices"].astype(np.int64),
            stored["values"].astype(np.float64),
            int(stored["models"]),
            None if math.isnan(split_half) else split_half,
            "cache",
            str(entry.path),
        )


def write_csv(path: Path, scores: MemScores) -> None:
    """`index,score` per line, atomically (the format `--memscores` reads)."""
    lines = [",".join(CSV_HEADER)] + [f"{int(i)},{float(v):.6g}" for i, v in zip(scores.indices, scores.values)]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def read_csv(path: str | Path) -> MemScores:
    """Scores from a CSV with header `index,score`; every problem is a one-line error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise MemscoreError(f"memorization-score file {path} does not exist; write one with `prunectl memscore --out {path}`")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise MemscoreError(f"cannot read memorization-score file {path}: {error}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or tuple(cell.strip().lower() for cell in rows[0]) != CSV_HEADER:
        raise MemscoreError(f"{path}: the first line must be the header `index,score`")
    indices, values = [], []
    first_line: dict[int, int] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            if len(row) != 2:
                raise ValueError
            index, value = int(row[0]), float(row[1])
        except ValueError:
            raise MemscoreError(f"{path}, line {line_number}: expected `index,score` (an integer and a number), got {','.join(row)!r}") from None
        if index < 0 or not math.isfinite(value) or not -1 <= value <= 1:
            raise MemscoreError(f"{path}, line {line_number}: index must be >= 0 and score a number in [-1, 1], got {index},{row[1]}")
        if index in first_line:
            raise MemscoreError(f"{path}, line {line_number}: dataset index {index} appears again (first on line {first_line[index]})")
        first_line[index] = line_number
        indices.append(index)
        values.append(value)
    if not indices:
        raise MemscoreError(f"{path} holds no scores")
    order = np.argsort(indices, kind="stable")
    return MemScores(np.asarray(indices, dtype=np.int64)[order], np.asarray(values, dtype=np.float64)[order], None, None, "file", str(path))
