"""The memscore stage: memorization scores of a recipe's members, from the cache or computed and cached.

`prunectl memscore` runs it ahead of a `wemem` run, so the run and every shadow with the same
inputs find the scores in the content cache; `--out` also writes them as the CSV that
`defense.memscores` reads.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunectl.cache import resolve_cache_dir
from prunectl.data import check_source, load_dataset, make_splits
from prunectl.memscores import MemScores, cached_estimate, write_csv
from prunectl.models import check_source as check_model_source
from prunectl.pipeline import helper_trainers
from prunectl.progress import Progress
from prunectl.recipe import Recipe, validate
from prunectl.training import resolve_device


@dataclass(frozen=True, eq=False)
class MemscoreResult:
    """What `prunectl memscore` reports: the scores, their noise, cost, and the cache entry used."""

    scores: MemScores
    cached: bool
    cache_entry: dict[str, str] | None
    models: int
    members: int
    seconds: float
    split_half_spearman: float | None
    summary: dict[str, Any]
    csv_path: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "scores"} | {"source": self.scores.source}


def memscore(
    recipe: Recipe,
    *,
    models: int | None = None,
    seed: int | None = None,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
) -> MemscoreResult:
    """Memorization scores of the recipe's members split, from the cache or computed and cached.

    `models` (default `defense.memscore_models`) helper models train on complementary halves of
    the members with the recipe's base-training settings. `seed` (default the recipe's) picks
    the halves and initialisations, so a second seed gives an independent estimate. `out` also
    writes them as CSV (`index,score`), the format `defense.memscores` loads.
    """
    if models is not None:
        recipe = validate(dataclasses.replace(recipe, defense=dataclasses.replace(recipe.defense, memscore_models=models)))
    started = time.perf_counter()
    check_source(recipe.data)
    check_model_source(recipe.model)
    device = resolve_device(recipe.device)
    data = load_dataset(recipe.data)
    splits = make_splits(data.y, recipe.data, recipe.seed)
    scores, entry, cached = cached_estimate(
        recipe,
        data,
        splits.members,
        seed=recipe.seed if seed is None else seed,
        **helper_trainers(recipe, data),
        device=device,
        cache_dir=resolve_cache_dir(cache_dir),
        progress=progress,
    )
    if out is not None:
        write_csv(Path(out), scores)
    return MemscoreResult(
        scores=scores,
        cached=cached,
        cache_entry=entry.to_dict() if entry is not None else None,
        models=recipe.defense.memscore_models,
        members=len(splits.members),
        seconds=time.perf_counter() - started,
        split_half_spearman=scores.split_half_spearman,
        summary=scores.summary(recipe.defense.rmr_threshold),
        csv_path=str(out) if out is not None else None,
    )
