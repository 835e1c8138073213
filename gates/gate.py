"""The gate's run: shadows → features → attacks → metrics → verdict (DESIGN.md, the contract).

`run_gate` never reports a pass it could not establish. Inputs too small for a meaningful
verdict raise `GateInputError` before any work (exit 2); anything that goes wrong after that —
an exception, a shadow that trained badly, a NaN figure — yields verdict "error", which is not
a pass (exit 1). The maximum over the gated attacks decides every criterion, so the gate never
reports less leakage than the simplest attack finds.

Where each threshold comes from (no evaluation sample ever sets one):

- the advantage threshold of SAMIA and the threshold family: the shadows' own members and
  non-members;
- the advantage threshold of the reference attacks (RMIA, LiRA): the auditor split, a share of
  the victim's balanced member/holdout pairs set aside and never evaluated. Shadow samples cannot
  stand in here: each shadow trains on a random half of the pool, so a shadow sample has 0–3 OUT
  references where a victim sample has all of them, and the scores' tails differ. The gate knows
  the victim's membership, so this is an auditor's threshold, one an attacker could not pick:
  it errs toward failing;
- every attack's threshold for a target FPR: the calibration set, a slice of the shadow pool that
  no shadow trains on. The victim never trained on it either and every shadow is OUT for it, as
  for the victim's evaluation samples, so its (1 − FPR) quantile is an honest threshold.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from gates.attacks import make_attack, uses_references
from gates.calibration import calibrated_rate, epsilon_lower_bound
from gates.errors import GateInputError
from gates.executor import Executor, InlineExecutor, InlineSession, OnResult, Session, shared_values, unit_threads
from gates.exposure import class_exposure, judge
from gates.features import AttackFeatures
from gates.metrics import best_threshold, evaluate_attack, resolution
from gates.policy import MIN_CALIBRATION_SIZE, MIN_EXPECTED_FALSE_POSITIVES, GatePolicy, check_policy
from gates.progress import Progress, SilentProgress
from gates.references import PseudoTarget, SignalTable, assemble_table
from gates.result import AttackMetrics, CalibratedRate, ClassExposure, Criterion, GateResult, ModelAudit, ShadowSummary, UnitTiming
from gates.sampling import balanced_by_class, stratified_split
from gates.seeds import derive_seed
from gates.shadows import ShadowPlan, ShadowTrainer, plan_shadows
from gates.work import (
    AttackUnit,
    AttackWork,
    PreparingTrainer,
    Readings,
    ShadowUnit,
    ShadowWork,
    Timed,
    VictimUnit,
    VictimWork,
    run_timed,
    unit_label,
)

MODEL_KINDS = ("original", "pruned")
REPORTED_FPRS = (0.01, 0.001)
"""False-positive rates every attack is reported at (the criterion's own target is added)."""


@dataclass(frozen=True, eq=False)
class GateInputs:
    """The victim and its data, as the core hands them over.

    `inputs` and `labels` are the whole dataset (indices below point into them). `dev_fraction`
    is the victim's dev / (members + dev): each shadow carves its dev split in the same ratio.
    `train_shadow` is the victim's pipeline function with the recipe bound; it runs wherever
    `executor` puts each shadow, so for any executor but the inline one it must pickle (a
    module-level class or function, not a lambda). `shared` holds further read-only values the
    trainer reads with `gates.executor.shared` (the dataset, placed once in every worker).
    """

    inputs: torch.Tensor
    labels: np.ndarray
    num_classes: int
    members: np.ndarray
    holdout: np.ndarray
    shadow_pool: np.ndarray
    dev_fraction: float
    pruned_model: nn.Module
    train_shadow: ShadowTrainer
    original_model: nn.Module | None = None
    extra_settings: dict[str, Any] = field(default_factory=dict)
    executor: Executor = field(default_factory=InlineExecutor)
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class EvaluationSet:
    members: np.ndarray
    nonmembers: np.ndarray

    @property
    def indices(self) -> np.ndarray:
        return np.concatenate([self.members, self.nonmembers])

    @property
    def membership(self) -> np.ndarray:
        return np.concatenate([np.ones(len(self.members), np.int64), np.zeros(len(self.nonmembers), np.int64)])


@dataclass(frozen=True, eq=False)
class GateData:
    """How the gate divides the data before anything trains.

    `evaluation` is what every verdict is measured on; `thresholds` the auditor split of the
    victim's pairs (reference attacks' advantage thresholds); `calibration` the known non-members
    reserved from the shadow pool; `attacker_pool` the rest of the pool, which the shadows split.
    """

    evaluation: EvaluationSet
    thresholds: EvaluationSet
    calibration: np.ndarray
    attacker_pool: np.ndarray


def select_evaluation(members: np.ndarray, holdout: np.ndarray, labels: np.ndarray, policy: GatePolicy) -> EvaluationSet:
    """Balanced and stratified: as many members as non-members in every class."""
    return _pairs(members, holdout, labels, policy)[0]


def _pairs(members: np.ndarray, holdout: np.ndarray, labels: np.ndarray, policy: GatePolicy) -> tuple[EvaluationSet, EvaluationSet]:
    """(evaluation, auditor split): balanced pairs, a `threshold_split` share of each class's set aside first."""
    rng = np.random.default_rng(derive_seed(policy.seed, "evaluation"))
    paired_members, paired_nonmembers = balanced_by_class(members, holdout, labels, rng)
    threshold_members, rest_members = stratified_split(paired_members, labels, policy.threshold_split, rng)
    threshold_nonmembers, rest_nonmembers = stratified_split(paired_nonmembers, labels, policy.threshold_split, rng)
    chosen_members, chosen_nonmembers = balanced_by_class(rest_members, rest_nonmembers, labels, rng, per_side=policy.eval_size or None)
    if len(chosen_members) < policy.min_eval_size:
        raise GateInputError(
            f"the evaluation set holds {len(chosen_members)} members and {len(chosen_nonmembers)} non-members after balancing "
            f"by class; a meaningful gate needs at least {policy.min_eval_size} per side: raise data.members and data.holdout"
            + (" (or gate.eval_size)" if policy.eval_size else "")
            + f" ({policy.threshold_split:.0%} of the pairs are set aside for reference attacks' thresholds: gate.threshold_split)"
        )
    return EvaluationSet(chosen_members, chosen_nonmembers), EvaluationSet(threshold_members, threshold_nonmembers)


def _calibration(shadow_pool: np.ndarray, labels: np.ndarray, policy: GatePolicy) -> tuple[np.ndarray, np.ndarray]:
    """(calibration slice, the rest of the pool), stratified by class."""
    wanted = policy.calibration_count(len(shadow_pool))
    if wanted > len(shadow_pool) // 2:
        raise GateInputError(
            f"the calibration set needs {wanted} known non-members from a shadow pool of "
            f"{len(shadow_pool)}, at least {MIN_CALIBRATION_SIZE} and at most half the pool: raise data.shadow_pool"
            + (" or lower gate.calibration_size" if policy.calibration_size else f" to {2 * MIN_CALIBRATION_SIZE} or more")
        )
    rng = np.random.default_rng(derive_seed(policy.seed, "calibration"))
    return stratified_split(shadow_pool, labels, wanted / len(shadow_pool), rng)


def _expected_false_positives(fpr: float, calibration: int, nonmembers: int) -> str:
    return (
        f"{calibration} calibration samples and {nonmembers} evaluation non-members mean "
        f"{calibration * fpr:.1f} and {nonmembers * fpr:.1f} expected false positives"
    )


def check_feasible(
    *, labels: np.ndarray, num_classes: int, members: np.ndarray, holdout: np.ndarray, shadow_pool: np.ndarray, policy: GatePolicy
) -> GateData:
    """Everything `run_gate` refuses before any training, needing no model; returns how the data divide.

    A caller that trains the victim first (prunectl's `compress`) calls it before training, so
    data too small for a meaningful gate costs nothing and leaves nothing behind.
    """
    check_policy(policy)
    labels = np.asarray(labels, dtype=np.int64)
    for name, other in (("members", members), ("holdout", holdout)):
        overlap = np.intersect1d(shadow_pool, other)
        if len(overlap):
            raise GateInputError(f"{len(overlap)} samples are in both the shadow pool and {name}; the splits must be disjoint")
    evaluation, thresholds = _pairs(members, holdout, labels, policy)
    calibration, attacker_pool = _calibration(np.asarray(shadow_pool, dtype=np.int64), labels, policy)
    minimum = 4 * num_classes
    if len(attacker_pool) < minimum:
        raise GateInputError(
            f"the shadow pool holds {len(attacker_pool)} samples besides the calibration set; shadows need at least {minimum} "
            f"(2 per class on each side): raise data.shadow_pool"
        )
    if policy.tpr_required and not policy.resolvable(policy.target_fpr, len(calibration), len(evaluation.nonmembers)):
        raise GateInputError(
            f"gate.max_tpr_at_fpr asks for the TPR at FPR {policy.target_fpr:g}, which this data cannot resolve: "
            f"{_expected_false_positives(policy.target_fpr, len(calibration), len(evaluation.nonmembers))}, and a rate "
            f"needs {MIN_EXPECTED_FALSE_POSITIVES} on each: raise data.shadow_pool and "
            f"data.holdout, raise gate.target_fpr, or unset gate.max_tpr_at_fpr to have it reported as not resolvable"
        )
    return GateData(evaluation, thresholds, calibration, attacker_pool)


def run_gate(inputs: GateInputs, policy: GatePolicy, progress: Progress | None = None) -> GateResult:
    """Audit the pruned (and original) victim model; see the module docstring for failure modes."""
    progress = progress or SilentProgress()
    labels = np.asarray(inputs.labels, dtype=np.int64)
    data = check_feasible(
        labels=labels,
        num_classes=inputs.num_classes,
        members=inputs.members,
        holdout=inputs.holdout,
        shadow_pool=inputs.shadow_pool,
        policy=policy,
    )
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    run = _GateRun(inputs, policy, labels, data, progress, seconds)
    try:
        result = run.execute()
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - fail closed: any error is "not passed"
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        result = run.error_result(detail)
    seconds["total"] = time.perf_counter() - started
    return result


class _GateRun:
    """One gate evaluation; holds what the stages hand each other."""

    def __init__(
        self, inputs: GateInputs, policy: GatePolicy, labels: np.ndarray, data: GateData, progress: Progress, seconds: dict[str, float]
    ) -> None:
        self.inputs = inputs
        self.policy = policy
        self.labels = labels
        self.data = data
        self.evaluation = data.evaluation
        self.progress = progress
        self.seconds = seconds
        self.shadow_summaries: tuple[ShadowSummary, ...] = ()
        self.warnings: list[str] = []
        self.resolution = resolution(len(self.evaluation.members), len(self.evaluation.nonmembers))
        self.fprs = tuple(sorted({policy.target_fpr, *REPORTED_FPRS}, reverse=True))
        self.per_class: tuple[ClassExposure, ...] = ()
        self.signal_rows: np.ndarray | None = None
        self.started_at = time.time()
        self.timeline: list[UnitTiming] = []

    # -- stages ---------------------------------------------------------------------------

    def execute(self) -> GateResult:
        policy = self.policy
        plans = plan_shadows(self.data.attacker_pool, self.labels, count=policy.shadows, dev_fraction=self.inputs.dev_fraction, seed=policy.seed)
        shadow_sets = self._shadow_training_sets(plans)
        for chosen in shadow_sets:
            self._refuse_evaluation_rows(chosen.indices, "the attack's training data")
        kinds = MODEL_KINDS if policy.audit_original and self.inputs.original_model is not None else ("pruned",)
        references = any(uses_references(name) for name in policy.attacks)
        signal_rows = None
        if references:
            signal_rows = np.unique(
                np.concatenate([self.evaluation.indices, self.data.thresholds.indices, self.data.calibration, *(s.indices for s in shadow_sets)])
            )
        self.signal_rows = signal_rows
        readings = Readings(kinds, self.inputs.num_classes, policy.sensitivity_samples, policy.sensitivity_eps, policy.seed, policy.device, signal_rows)
        shared = {"inputs": self.inputs.inputs, "labels": self.labels, **self.inputs.shared}
        for key in ("shadows", "features", "references", "attacks"):
            self.seconds[key] = 0.0
        with self.inputs.executor.open(shared) as session:
            stage = time.perf_counter()
            shadows, victims = self._read_models(session, plans, shadow_sets, kinds, readings, shared)
            self.seconds["units_wall"] = time.perf_counter() - stage
            holdout_accuracy = {kind: victims[kind].accuracy for kind in kinds}
            self._check_shadows(plans, shadows, holdout_accuracy)
            shadow_features = {kind: self._shadow_features(shadows, shadow_sets, kind) for kind in kinds}
            tables = {kind: self._signal_table(kind, plans, shadows, victims[kind]) for kind in kinds} if references else {}
            stage = time.perf_counter()
            attacks = self._run_attacks(session, kinds, shadow_features, {kind: victims[kind].readings.features for kind in kinds})
            self.seconds["attacks_wall"] = time.perf_counter() - stage
        audits = {kind: self._audit(kind, attacks[kind], tables.get(kind), shadow_sets, holdout_accuracy[kind]) for kind in kinds}
        return self._verdict(audits.get("original"), audits["pruned"])

    def _read_models(
        self,
        session: Session,
        plans: tuple[ShadowPlan, ...],
        shadow_sets: list[EvaluationSet],
        kinds: tuple[str, ...],
        readings: Readings,
        shared: dict[str, Any],
    ) -> tuple[list[ShadowWork], dict[str, VictimWork]]:
        """Every shadow pipeline and every victim model's readings, as units on the executor.

        The shadows go first (they are the long units); a TorchScript victim does not pickle, so
        its readings are taken in this process, at the units' fixed thread count all the same.
        """
        self._prepare_shadows(session, plans, shared)
        scored = np.concatenate([self.evaluation.indices, self.data.calibration])
        shadow_units = [ShadowUnit(self.inputs.train_shadow, plan, chosen.indices, readings) for plan, chosen in zip(plans, shadow_sets)]
        victim_units = [VictimUnit(kind, self._victim_model(kind), scored, self.inputs.holdout, readings) for kind in kinds]
        portable = [unit for unit in victim_units if not isinstance(unit.model, torch.jit.ScriptModule)]
        local = [unit for unit in victim_units if unit not in portable]
        done = 0
        with self.progress.task(f"shadow models (0/{len(plans)})", total=len(plans)) as bar:

            def finished(position: int, result: Any) -> None:
                nonlocal done
                if position < len(shadow_units):
                    done += 1
                    bar.advance(description=f"shadow models ({done}/{len(plans)})")

            results = self._map(session, "models", [*shadow_units, *portable], on_result=finished)
            results += self._map(InlineSession(shared), "models", local)
        shadows = results[: len(shadow_units)]
        victims = {work.kind: work for work in results[len(shadow_units) :]}
        for work in shadows:
            self.seconds["shadows"] += work.seconds["training"]
        for work in [*shadows, *victims.values()]:
            self.seconds["features"] += work.seconds["features"]
            self.seconds["references"] += work.seconds["references"]
        return shadows, victims

    def _prepare_shadows(self, session: Session, plans: tuple[ShadowPlan, ...], shared: dict[str, Any]) -> None:
        """The trainer's preparation units (`gates.work.PreparingTrainer`), if it has any, on the executor."""
        trainer = self.inputs.train_shadow
        if not isinstance(trainer, PreparingTrainer):
            return
        with shared_values(shared), unit_threads():
            units = trainer.preparation(plans)
        if not units:
            return
        started = time.perf_counter()
        with self.progress.task(f"shadow helper models ({len(units)})", total=len(units)) as bar:
            results = self._map(session, "preparation", units, on_result=lambda position, result: bar.advance())
        with shared_values(shared), unit_threads():
            trainer.prepared(units, results)
        self.seconds["preparation_wall"] = time.perf_counter() - started

    def _run_attacks(
        self,
        session: Session,
        kinds: tuple[str, ...],
        shadow_features: dict[str, tuple[AttackFeatures, np.ndarray]],
        victim_features: dict[str, AttackFeatures],
    ) -> dict[str, dict[str, AttackWork]]:
        """Every attack that learns from shadow features, on each audited model, as units."""
        n_evaluated = len(self.evaluation.membership)
        units: list[AttackUnit] = []
        for kind in kinds:
            victim = victim_features[kind]
            evaluated, calibration = victim.subset(np.arange(n_evaluated)), victim.subset(np.arange(n_evaluated, len(victim)))
            seed = derive_seed(self.policy.seed, "attack", kind)
            for name in self.policy.attacks:
                if not uses_references(name):
                    training, membership = shadow_features[kind]
                    units.append(AttackUnit(kind, name, dict(self.policy.options), seed, self.policy.device, training, membership, evaluated, calibration))
        results: dict[str, dict[str, AttackWork]] = {kind: {} for kind in kinds}
        with self.progress.task("attacks", total=len(units)) as bar:
            works = self._map(session, "attacks", units, on_result=lambda position, work: bar.advance(description=f"attacks: {work.name}"))
        for unit, work in zip(units, works):
            results[unit.kind][work.name] = work
            self.seconds["attacks"] += work.seconds
        return results

    def _map(self, session: Session, stage: str, units: list[Any], on_result: OnResult | None = None) -> list[Any]:
        """The units' results from `session`, each run through `run_timed`: where and when it ran goes to the timeline."""

        def finished(position: int, timed: Timed) -> None:
            if on_result is not None:
                on_result(position, timed.result)

        timed = session.map(run_timed, units, on_result=finished)
        self.timeline += [UnitTiming(stage, unit_label(unit), t.worker, t.started - self.started_at, t.seconds) for unit, t in zip(units, timed, strict=True)]
        return [t.result for t in timed]

    def _victim_model(self, kind: str) -> nn.Module:
        model = self.inputs.pruned_model if kind == "pruned" else self.inputs.original_model
        assert model is not None
        return model

    def _shadow_training_sets(self, plans: tuple[ShadowPlan, ...]) -> list[EvaluationSet]:
        """Per shadow: its members and non-members, balanced by class like the evaluation set."""
        sets = []
        cap = self.policy.attack_train_size // len(plans) if self.policy.attack_train_size else None
        for plan in plans:
            rng = np.random.default_rng(derive_seed(self.policy.seed, "shadow-balance", plan.index))
            members, nonmembers = balanced_by_class(plan.members, plan.nonmembers, self.labels, rng, per_side=cap)
            sets.append(EvaluationSet(members, nonmembers))
        return sets

    def _shadow_features(self, shadows: list[ShadowWork], sets: list[EvaluationSet], kind: str) -> tuple[AttackFeatures, np.ndarray]:
        features = AttackFeatures.concat([work.models[kind].features for work in shadows])
        self._refuse_evaluation_rows(features.indices, "the attack's training data")
        return features, np.concatenate([chosen.membership for chosen in sets])

    def _refuse_evaluation_rows(self, indices: np.ndarray, where: str) -> None:
        leaked = np.intersect1d(indices, self.evaluation.indices)
        if len(leaked):
            raise RuntimeError(f"{len(leaked)} evaluation samples reached {where}; refusing to score")

    def _signal_table(self, kind: str, plans: tuple[ShadowPlan, ...], shadows: list[ShadowWork], victim: VictimWork) -> SignalTable:
        """Every shadow (the references) and the victim on every sample a reference attack reads."""
        rows = self.signal_rows
        assert rows is not None
        columns = [work.models[kind].signals for work in shadows] + [victim.readings.signals]
        assert all(column is not None for column in columns)
        return assemble_table(
            rows, self.labels[rows], columns, [np.concatenate([plan.members, plan.dev]) for plan in plans]  # type: ignore[arg-type]
        )

    def _check_shadows(self, plans: tuple[ShadowPlan, ...], shadows: list[ShadowWork], victim_accuracy: dict[str, float]) -> None:
        """Refuse an attack learned from shadows much worse than the victim (they mislead it)."""
        summaries = []
        for plan, work in zip(plans, shadows):
            summaries.append(
                ShadowSummary(
                    plan.index,
                    plan.seed,
                    len(plan.members),
                    len(plan.dev),
                    len(plan.nonmembers),
                    work.accuracy["original"],
                    work.accuracy["pruned"],
                    work.seconds["training"],
                )
            )
        self.shadow_summaries = tuple(summaries)
        limit = self.policy.max_shadow_accuracy_drop
        for summary in summaries:
            for kind, accuracy in (("pruned", summary.pruned_accuracy), ("original", summary.base_accuracy)):
                if kind not in victim_accuracy:
                    continue
                gap = victim_accuracy[kind] - accuracy
                if not math.isfinite(accuracy) or gap > limit:
                    raise ShadowQualityError(
                        f"shadow {summary.index} reaches {accuracy:.1%} holdout accuracy ({kind} model), "
                        f"{gap * 100:.1f} points below the victim's {victim_accuracy[kind]:.1%} (limit {limit * 100:.0f}): "
                        f"an attack learned from it would not transfer. Give the shadows more data (data.shadow_pool) "
                        f"or, if the victim's own training differs from its recipe, raise gate.max_shadow_accuracy_drop"
                    )

    def _audit(
        self,
        kind: str,
        works: dict[str, AttackWork],
        table: SignalTable | None,
        shadow_sets: list[EvaluationSet],
        holdout_accuracy: float,
    ) -> ModelAudit:
        membership = self.evaluation.membership
        seed = derive_seed(self.policy.seed, "attack", kind)
        measured: list[AttackMetrics] = []
        scores: dict[str, np.ndarray] = {}
        with self.progress.task(f"reference attacks and metrics ({kind} model)", total=len(self.policy.attacks)) as bar:
            for name in self.policy.attacks:
                if uses_references(name):
                    assert table is not None
                    started = time.perf_counter()
                    attack = make_attack(name, self.policy.options, seed=seed, device=self.policy.device)
                    evaluation_scores, calibration_scores, threshold, source = self._reference_scores(attack, table, shadow_sets)
                    self.seconds["references"] += time.perf_counter() - started
                else:
                    work = works[name]
                    evaluation_scores, calibration_scores = work.evaluation_scores, work.calibration_scores
                    threshold, source = work.threshold, work.threshold_source
                scores[name] = evaluation_scores
                metrics = evaluate_attack(
                    name,
                    evaluation_scores,
                    membership,
                    threshold,
                    resamples=self.policy.bootstrap,
                    seed=derive_seed(self.policy.seed, "bootstrap", kind, name),
                )
                rates = tuple(
                    calibrated_rate(
                        evaluation_scores,
                        membership,
                        calibration_scores,
                        fpr,
                        resolvable=self.policy.resolvable(fpr, len(calibration_scores), len(self.evaluation.nonmembers)),
                    )
                    for fpr in self.fprs
                )
                measured.append(dataclasses.replace(metrics, threshold_source=source, calibrated=rates))
                if kind == "pruned":
                    self._class_figures(name, evaluation_scores, threshold, rates)
                bar.advance()
        return ModelAudit(kind, holdout_accuracy, self._with_epsilon(measured), scores, membership)

    def _reference_scores(self, attack: Any, table: SignalTable, shadow_sets: list[EvaluationSet]) -> tuple[np.ndarray, np.ndarray, float, str]:
        """(evaluation scores, calibration scores, advantage threshold, its source) of a reference attack.

        It tunes itself on shadows playing the victim; its advantage threshold comes from the
        auditor split; the calibration slice is its population (a calibration sample is never
        compared with itself).
        """
        victim = table.victim
        calibration = self.data.calibration
        population = table.view(calibration, victim)
        pseudo_targets = []
        for number, chosen in enumerate(shadow_sets):
            self._refuse_evaluation_rows(chosen.indices, "a reference attack's tuning data")
            order = np.argsort(chosen.indices, kind="stable")
            pseudo_targets.append(
                PseudoTarget(table.view(chosen.indices[order], number), chosen.membership[order], table.view(calibration, number))
            )
        attack.fit(pseudo_targets, population)
        thresholds = self.data.thresholds
        self._refuse_evaluation_rows(np.concatenate([thresholds.indices, calibration]), "a reference attack's threshold data")
        order = np.argsort(thresholds.indices, kind="stable")
        split_scores = np.asarray(attack.score(table.view(thresholds.indices[order], victim), population), dtype=np.float64)
        threshold = best_threshold(split_scores, thresholds.membership[order])
        evaluation_scores = np.asarray(attack.score(table.view(self.evaluation.indices, victim), population), dtype=np.float64)
        calibration_scores = np.asarray(attack.score(population, population), dtype=np.float64)
        source = f"auditor split ({len(thresholds.members)} member/holdout pairs, not evaluated)"
        return evaluation_scores, calibration_scores, threshold, source

    def _with_epsilon(self, measured: list[AttackMetrics]) -> tuple[AttackMetrics, ...]:
        """Each rate's ε estimate, Bonferroni-corrected over every attack and calibrated threshold of this audit."""
        tests = sum(len(m.calibrated) for m in measured)
        alpha = 0.05 / max(tests, 1)
        done = []
        for metrics in measured:
            rates = tuple(
                dataclasses.replace(rate, epsilon=epsilon_lower_bound(rate, alpha=alpha, delta=self.policy.epsilon_delta))
                for rate in metrics.calibrated
            )
            values = [r.epsilon for r in rates]
            epsilon = float("nan") if not values or any(math.isnan(v) for v in values) else max(values)
            done.append(dataclasses.replace(metrics, calibrated=rates, epsilon=epsilon))
        return tuple(done)

    def _class_figures(self, name: str, scores: np.ndarray, threshold: float, rates: tuple[CalibratedRate, ...]) -> None:
        target = next(rate for rate in rates if math.isclose(rate.target_fpr, self.policy.target_fpr))
        if not (np.all(np.isfinite(scores)) and math.isfinite(threshold) and not math.isnan(target.threshold)):
            return
        self.per_class += class_exposure(
            name,
            scores,
            self.evaluation.membership,
            self.labels[self.evaluation.indices],
            advantage_threshold=threshold,
            tpr_threshold=target.threshold,
            max_advantage=self.policy.max_advantage,
            max_tpr=self.policy.tpr_limit,
            min_per_side=self.policy.per_class_min,
            seed=derive_seed(self.policy.seed, "class-bootstrap", name),
        )

    # -- the decision ---------------------------------------------------------------------

    def _verdict(self, original: ModelAudit | None, pruned: ModelAudit) -> GateResult:
        policy = self.policy
        if policy.max_advantage < self.resolution:
            self.warnings.append(
                f"max_advantage {policy.max_advantage:.3f} is finer than this evaluation set can resolve "
                f"(±{self.resolution:.3f} at {len(self.evaluation.members)} per side): the verdict is within noise; "
                f"use more members and holdout samples"
            )
        for audit in (a for a in (original, pruned) if a is not None):
            for metrics in audit.attacks:
                if (metrics.tpr, metrics.fpr) in ((1.0, 1.0), (0.0, 0.0)):
                    side = "member" if metrics.tpr == 1.0 else "non-member"
                    self.warnings.append(
                        f"{metrics.attack} on the {audit.model} model: its threshold calls every sample a {side} "
                        f"(it found no usable signal where its threshold was chosen), so its advantage is 0 by construction"
                    )
        gated = [pruned.metrics(name) for name in policy.attacks]
        advantage = self._advantage_criterion(gated)
        criteria = [advantage, self._tpr_criterion(gated), self._per_class_criterion(gated, advantage.deciding_attack)]
        errors = [c for c in criteria if c.status == "error"]
        failures = [c for c in criteria if c.status == "fail"]
        if errors:
            verdict, reason = "error", "not passed: " + "; ".join(c.reason for c in errors)
        elif failures:
            verdict, reason = "fail", "; ".join(c.reason for c in failures)
        else:
            verdict, reason = "pass", "; ".join(c.reason for c in criteria if c.status == "pass")
        return self._result(
            verdict,
            reason,
            original,
            pruned,
            deciding=advantage.deciding_attack,
            value=advantage.value,
            criteria=tuple(criteria),
        )

    def _advantage_criterion(self, gated: list[AttackMetrics]) -> Criterion:
        policy = self.policy
        broken = [m.attack for m in gated if not m.is_finite]
        if broken:
            return Criterion(
                "advantage", "error", policy.max_advantage, None, None, f"{', '.join(broken)} produced NaN figures; the gate cannot establish the leakage"
            )
        figure = {m.attack: (m.advantage_high if policy.strict else m.advantage) for m in gated}
        deciding = max(figure, key=lambda name: figure[name])
        value = figure[deciding]
        what = "upper 95% bound of the advantage" if policy.strict else "advantage"
        if value > policy.max_advantage:
            return Criterion("advantage", "fail", policy.max_advantage, value, deciding, f"{deciding} {what} {value:.3f} exceeds max_advantage {policy.max_advantage:.3f}")
        return Criterion(
            "advantage", "pass", policy.max_advantage, value, deciding, f"highest {what} {value:.3f} ({deciding}) is within max_advantage {policy.max_advantage:.3f}"
        )

    def _tpr_criterion(self, gated: list[AttackMetrics]) -> Criterion:
        policy = self.policy
        fpr, limit = policy.target_fpr, policy.tpr_limit
        if limit >= 1:
            return Criterion("tpr_at_fpr", "off", limit, None, None, "gate.max_tpr_at_fpr = 1: the low-FPR criterion is off")
        rates = {m.attack: m.rate(fpr) for m in gated}
        if any(rate is None or math.isnan(rate.tpr) for rate in rates.values()):
            broken = [name for name, rate in rates.items() if rate is None or math.isnan(rate.tpr)]
            return Criterion("tpr_at_fpr", "error", limit, None, None, f"{', '.join(broken)} produced no TPR at FPR {fpr:g}")
        if not all(rate.resolvable for rate in rates.values()):  # type: ignore[union-attr]
            some = next(iter(rates.values()))
            assert some is not None
            reason = (
                f"TPR at FPR {fpr:g} is not resolvable here: "
                f"{_expected_false_positives(fpr, len(self.data.calibration), some.n_nonmembers)} "
                f"(a rate needs {MIN_EXPECTED_FALSE_POSITIVES} on each); reported, not gated"
            )
            self.warnings.append(reason)
            return Criterion("tpr_at_fpr", "not resolvable", limit, None, None, reason)
        figure = {name: (rate.tpr_high if policy.strict else rate.tpr) for name, rate in rates.items()}  # type: ignore[union-attr]
        deciding = max(figure, key=lambda name: figure[name])
        value = figure[deciding]
        achieved = rates[deciding].fpr  # type: ignore[union-attr]
        what = "upper 95% bound of the TPR" if policy.strict else "TPR"
        if value > limit:
            return Criterion(
                "tpr_at_fpr", "fail", limit, value, deciding,
                f"{deciding} {what} {value:.3f} at FPR {fpr:g} (achieved {achieved:.4f}) exceeds max_tpr_at_fpr {limit:.3f}",
            )
        return Criterion(
            "tpr_at_fpr", "pass", limit, value, deciding,
            f"highest {what} at FPR {fpr:g} {value:.3f} ({deciding}, achieved FPR {achieved:.4f}) is within max_tpr_at_fpr {limit:.3f}",
        )

    def _per_class_criterion(self, gated: list[AttackMetrics], deciding: str | None) -> Criterion:
        """Judge the deciding attack's and RMIA's per-class figures; keep those for the reports either way."""
        policy = self.policy
        shown = [name for name in dict.fromkeys([deciding, "rmia"]) if name in policy.attacks]
        exposures = tuple(e for e in self.per_class if e.attack in shown)
        tpr_judged = policy.tpr_limit < 1 and all((m.rate(policy.target_fpr) or m.calibrated[0]).resolvable for m in gated if m.calibrated)
        self.per_class = judge(exposures, max_advantage=policy.max_advantage, max_tpr=policy.tpr_limit if tpr_judged else None, strict=policy.strict)
        if not policy.per_class:
            return Criterion("per_class", "off", None, None, None, "gate.per_class = false: per-class exposure is reported, not gated")
        judged = [e for e in self.per_class if e.judged]
        if not judged:
            return Criterion(
                "per_class", "not resolvable", None, None, None,
                f"no class has gate.per_class_min = {policy.per_class_min} samples per side; reported, not gated",
            )
        exceeding = [e for e in judged if e.exceeds]
        how = "upper 95% bounds" if policy.strict else "Holm-corrected tests"
        if exceeding:
            worst = ", ".join(f"class {e.label} ({e.attack}: {'/'.join(e.exceeds)})" for e in exceeding[:5])
            return Criterion("per_class", "fail", None, None, exceeding[0].attack, f"per class ({how}): {worst} exceed the limits")
        return Criterion("per_class", "pass", None, None, None, f"all {len({e.label for e in judged})} judged classes are within the limits ({how})")

    def _result(
        self,
        verdict: str,
        reason: str,
        original: ModelAudit | None,
        pruned: ModelAudit | None,
        *,
        deciding: str | None = None,
        value: float | None = None,
        error: str | None = None,
        criteria: tuple[Criterion, ...] = (),
    ) -> GateResult:
        epsilons = [m.epsilon for m in pruned.attacks if m.attack in self.policy.attacks] if pruned else []
        return GateResult(
            verdict=verdict,
            reason=reason,
            max_advantage=self.policy.max_advantage,
            strict=self.policy.strict,
            gated_attacks=tuple(self.policy.attacks),
            deciding_attack=deciding,
            gated_value=value,
            resolution=self.resolution,
            warnings=tuple(dict.fromkeys(self.warnings)),
            pruned=pruned,
            original=original,
            shadows=self.shadow_summaries,
            n_members=len(self.evaluation.members),
            n_nonmembers=len(self.evaluation.nonmembers),
            seed=self.policy.seed,
            settings={**self.policy.to_dict(), **self.inputs.extra_settings},
            seconds=self.seconds,
            error=error,
            criteria=criteria,
            target_fpr=self.policy.target_fpr,
            epsilon=max(epsilons) if epsilons and all(math.isfinite(e) for e in epsilons) else None,
            per_class=self.per_class,
            calibration_size=len(self.data.calibration),
            threshold_pairs=len(self.data.thresholds.members),
            timeline=tuple(self.timeline),
        )

    def error_result(self, detail: str) -> GateResult:
        return self._result("error", f"not passed: the gate could not finish ({detail})", None, None, error=detail)


class ShadowQualityError(RuntimeError):
    """A shadow model trained far worse than the victim: the gate refuses to attack with it."""
