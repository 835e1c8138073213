"""What the gate's workers run for prunectl: the victim's pipeline as a shadow trainer, and a
WeMem shadow's memorization-score helper models as units of their own.

Kept apart from the gate stage (`prunectl.stages.gate`) because a worker imports the module of
every object it unpickles: this one pulls in the pipeline and nothing of the gate's reporting,
statistics or export, so a spawned worker is ready sooner (`benchmarks/gate_speed.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gates.executor import shared
from gates.shadows import ShadowPlan
from prunectl import memscores
from prunectl.defenses import make_defense
from prunectl.faults import fault_point
from prunectl.pipeline import helper_trainers, run_pipeline
from prunectl.quantized import int8_model, quantizes
from prunectl.recipe import Recipe
from prunectl.training import resolve_device


@dataclass(frozen=True)
class ShadowPipeline:
    """The gate's shadow trainer: the victim's pipeline with its recipe bound, as a picklable
    object, so an executor can run it in another process. The dataset is the executor's shared
    value `dataset` (placed once per worker), never part of the pickled trainer."""

    recipe: Recipe
    cache_dir: Path | None

    def __call__(self, members: np.ndarray, dev: np.ndarray, seed: int) -> tuple[Any, Any]:
        fault_point("shadow-pipeline")
        data = shared("dataset")
        output = run_pipeline(self.recipe, members, dev, seed, cache_dir=self.cache_dir, data=data)
        pruned = int8_model(output.pruned_model, self.recipe, data, members) if quantizes(self.recipe) else output.pruned_model
        return output.base_model, pruned

    def preparation(self, plans: Sequence[ShadowPlan]) -> list[HelperUnit]:
        """The memorization-score helper models of every shadow whose scores the content cache
        lacks, one unit each (`gates.work.PreparingTrainer`): a WeMem shadow would otherwise
        train its K helpers one after another inside its own unit, so that with 4 shadows no more
        than 4 workers ever had work. None without a content cache (nowhere to hand them over)."""
        if self.cache_dir is None or not make_defense(self.recipe.defense).uses_memorization_scores:
            return []
        data, device = shared("dataset"), resolve_device(self.recipe.device)
        units = []
        for plan in plans:
            entry, _ = memscores.cache_entry(self.recipe, data, plan.members, seed=plan.seed, device=device, cache_dir=self.cache_dir)
            if entry.exists:
                continue
            members = np.sort(np.asarray(plan.members, dtype=np.int64))
            helpers = memscores.plan_helpers(len(members), models=self.recipe.defense.memscore_models, seed=memscores.helper_seed(plan.seed))
            units += [HelperUnit(self.recipe, plan.index, plan.seed, members, helper) for helper in helpers]
        return units

    def prepared(self, units: list[HelperUnit], results: list[np.ndarray]) -> None:
        """Each shadow's helper outcomes scored and stored in the cache, where its pipeline finds them."""
        data, device = shared("dataset"), resolve_device(self.recipe.device)
        for shadow in dict.fromkeys(unit.shadow for unit in units):
            mine = [(unit, result) for unit, result in zip(units, results, strict=True) if unit.shadow == shadow]
            first = mine[0][0]
            outcomes = memscores.collect(first.members, [unit.plan for unit, _ in mine], [result for _, result in mine])
            entry, inputs = memscores.cache_entry(self.recipe, data, first.members, seed=first.seed, device=device, cache_dir=self.cache_dir)
            memscores.store(entry, inputs, memscores.estimate(outcomes), self.cache_dir)


@dataclass(frozen=True, eq=False)
class HelperUnit:
    """One memorization-score helper model of shadow `shadow` (pipeline seed `seed`), trained on
    its half of the shadow's sorted `members` exactly as the shadow's own pipeline would."""

    recipe: Recipe
    shadow: int
    seed: int
    members: np.ndarray
    plan: memscores.HelperPlan

    @property
    def label(self) -> str:
        """How the gate's timeline names it."""
        return f"helper {self.plan.row} of shadow {self.shadow}"

    def run(self) -> np.ndarray:
        data = shared("dataset")
        trainers = helper_trainers(self.recipe, data)
        return memscores.train_helper(data, self.members, self.plan, **trainers, device=resolve_device(self.recipe.device))
