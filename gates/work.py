"""The gate's units of work, each a plain function an executor can run anywhere (`gates.executor`).

- :func:`train_shadow`: one shadow pipeline (the victim's recipe on the shadow's half of the
  pool), and everything the gate reads from its models: holdout accuracy, attack features on
  its balanced training rows, and the reference signals on every row a reference attack reads.
  The models never leave the worker.
- :func:`read_victim`: the same readings of one victim model (pruned or original).
- :func:`run_attack`: one attack fitted on shadow features and scoring the victim's.
- a :class:`PreparingTrainer`'s preparation units: work the shadow trainer splits out of its
  pipelines (a WeMem shadow's memorization-score helper models), run before the shadows.

The gate runs each through :func:`run_timed`, which also says which process ran it and when:
the report's `timeline`.

Inputs and outputs are arrays and small dataclasses, so a unit pickles cheaply; the dataset is
the executor's shared value `inputs` (and `labels`), never part of a unit. Every seed comes from
the unit, so a unit's result does not depend on where, when or next to what it ran.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from gates.attacks import make_attack
from gates.executor import shared
from gates.features import AttackFeatures, compute_features, softmax_posteriors
from gates.references import true_class_signals
from gates.seeds import derive_seed
from gates.shadows import ShadowPlan, ShadowTrainer

KINDS = ("original", "pruned")


class PreparationUnit(Protocol):
    """An independent piece of a shadow pipeline's work; `run()` returns a picklable result (and a
    `label` attribute, if it has one, names it in the gate's timeline)."""

    def run(self) -> Any: ...


@runtime_checkable
class PreparingTrainer(Protocol):
    """A shadow trainer that splits independent work out of its pipelines, so that it spreads
    over the executor's workers instead of running inside one shadow after another.

    The gate calls `preparation(plans)` in its own process (the executor's shared values
    readable with `shared`, at the units' thread count), runs the units it returns on the
    executor, hands their results to `prepared(units, results)` (in this process again), and
    only then runs the shadow pipelines, which find what was prepared (in a content cache)."""

    def preparation(self, plans: Sequence[ShadowPlan]) -> list[PreparationUnit]: ...

    def prepared(self, units: list[PreparationUnit], results: list[Any]) -> None: ...


@dataclass(frozen=True)
class Readings:
    """What the gate needs of the models: kinds to read, feature settings, signal rows."""

    kinds: tuple[str, ...]
    num_classes: int
    samples: int
    eps: float
    seed: int
    device: str
    signal_rows: np.ndarray | None = None
    """Sorted dataset rows of the reference signal table; None when no reference attack runs."""


@dataclass(frozen=True, eq=False)
class ModelReadings:
    """One model's readings (`kind` "pruned" or "original")."""

    features: AttackFeatures
    signals: tuple[np.ndarray, np.ndarray] | None
    """(true-class probability, its logit) on `Readings.signal_rows`."""


@dataclass(frozen=True, eq=False)
class ShadowUnit:
    trainer: ShadowTrainer
    plan: ShadowPlan
    rows: np.ndarray
    """The shadow's balanced members then non-members: the attack's training rows."""
    readings: Readings


@dataclass(frozen=True, eq=False)
class ShadowWork:
    index: int
    accuracy: dict[str, float]
    """Holdout accuracy (on the shadow's non-members) of both models, "original" and "pruned"."""
    models: dict[str, ModelReadings]
    seconds: dict[str, float] = field(default_factory=dict)
    """`training` (the pipeline), `features`, `references` (the signal columns)."""


@dataclass(frozen=True, eq=False)
class VictimUnit:
    kind: str
    model: nn.Module
    rows: np.ndarray
    """Evaluation then calibration rows: the features every attack scores."""
    holdout: np.ndarray
    readings: Readings


@dataclass(frozen=True, eq=False)
class VictimWork:
    kind: str
    accuracy: float
    """On every holdout sample."""
    readings: ModelReadings
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class AttackUnit:
    kind: str
    """The audited model whose features it scores: "original" or "pruned"."""
    name: str
    options: dict[str, Any]
    seed: int
    device: str
    training: AttackFeatures
    membership: np.ndarray
    evaluated: AttackFeatures
    calibration: AttackFeatures


@dataclass(frozen=True, eq=False)
class AttackWork:
    name: str
    evaluation_scores: np.ndarray
    calibration_scores: np.ndarray
    threshold: float
    threshold_source: str
    seconds: float


def train_shadow(unit: ShadowUnit) -> ShadowWork:
    plan = unit.plan
    started = time.perf_counter()
    base, pruned = unit.trainer(plan.members, plan.dev, plan.seed)
    seconds = {"training": time.perf_counter() - started, "features": 0.0, "references": 0.0}
    models = {"pruned": pruned.eval(), "original": base.eval()}
    inputs, labels, device = shared("inputs"), shared("labels"), torch.device(unit.readings.device)
    accuracy = {kind: holdout_accuracy(model, inputs, labels, plan.nonmembers, device) for kind, model in models.items()}
    readings = {kind: _read(models[kind], unit.rows, unit.readings, kind, f"shadow-{plan.index}", seconds) for kind in unit.readings.kinds}
    return ShadowWork(plan.index, accuracy, readings, seconds)


def read_victim(unit: VictimUnit) -> VictimWork:
    seconds = {"features": 0.0, "references": 0.0}
    accuracy = holdout_accuracy(unit.model, shared("inputs"), shared("labels"), unit.holdout, torch.device(unit.readings.device))
    return VictimWork(unit.kind, accuracy, _read(unit.model, unit.rows, unit.readings, unit.kind, "victim", seconds), seconds)


def run_attack(unit: AttackUnit) -> AttackWork:
    started = time.perf_counter()
    attack = make_attack(unit.name, unit.options, seed=unit.seed, device=unit.device)
    attack.fit(unit.training, unit.membership)
    evaluation = np.asarray(attack.score(unit.evaluated), dtype=np.float64)
    calibration = np.asarray(attack.score(unit.calibration), dtype=np.float64)
    return AttackWork(unit.name, evaluation, calibration, float(attack.threshold), attack.threshold_source, time.perf_counter() - started)


def _read(model: nn.Module, rows: np.ndarray, how: Readings, kind: str, who: str, seconds: dict[str, float]) -> ModelReadings:
    inputs, labels = shared("inputs"), shared("labels")
    device = torch.device(how.device)
    started = time.perf_counter()
    features = compute_features(
        model,
        inputs,
        labels,
        rows,
        num_classes=how.num_classes,
        samples=how.samples,
        eps=how.eps,
        seed=derive_seed(how.seed, "features", kind, who),
        device=device,
    )
    seconds["features"] += time.perf_counter() - started
    signals = None
    if how.signal_rows is not None:
        started = time.perf_counter()
        posteriors = softmax_posteriors(model, inputs, how.signal_rows, chunk_size=1024, device=device)
        signals = true_class_signals(posteriors, labels[how.signal_rows])
        seconds["references"] += time.perf_counter() - started
    return ModelReadings(features, signals)


def holdout_accuracy(model: nn.Module, inputs: torch.Tensor, labels: np.ndarray, indices: np.ndarray, device: torch.device) -> float:
    """Share of `indices` the model classifies correctly (NaN for none)."""
    if len(indices) == 0:
        return float("nan")
    predicted = softmax_posteriors(model, inputs, indices, chunk_size=1024, device=device).argmax(axis=1)
    return float(np.mean(predicted == labels[indices]))


def run_work(unit: Any) -> Any:
    """The unit function for any of the gate's units (one picklable entry point for every backend)."""
    if isinstance(unit, ShadowUnit):
        return train_shadow(unit)
    if isinstance(unit, VictimUnit):
        return read_victim(unit)
    if isinstance(unit, AttackUnit):
        return run_attack(unit)
    return unit.run()  # a PreparingTrainer's preparation unit


def unit_label(unit: Any) -> str:
    """How the gate's timeline names a unit: `shadow 0`, `victim pruned`, `samia (original)`, or a
    preparation unit's own `label` (its type's name if it has none)."""
    if isinstance(unit, ShadowUnit):
        return f"shadow {unit.plan.index}"
    if isinstance(unit, VictimUnit):
        return f"victim {unit.kind}"
    if isinstance(unit, AttackUnit):
        return f"{unit.name} ({unit.kind})"
    return str(getattr(unit, "label", type(unit).__name__))


@dataclass(frozen=True, eq=False)
class Timed:
    """A unit's result, with the process that ran it and when (`time.time()` on that process's clock)."""

    result: Any
    worker: str
    started: float
    seconds: float


def run_timed(unit: Any) -> Timed:
    """:func:`run_work`, timed where it runs: the entry point the gate hands its executor."""
    started_at, started = time.time(), time.perf_counter()
    result = run_work(unit)
    return Timed(result, f"{socket.gethostname()}:{os.getpid()}", started_at, time.perf_counter() - started)
