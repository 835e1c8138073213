"""The gate's run: shadows → features → attacks → metrics → verdict (DESIGN.md, the contract).

`run_gate` never reports a pass it could not establish. Inputs too small for a meaningful
verdict raise `GateInputError` before any work (exit 2); anything that goes wrong after that —
an exception, a shadow that trained badly, a NaN figure — yields verdict "error", which is not
a pass (exit 1). The maximum over the gated attacks decides, so the gate never reports less
leakage than the simplest attack finds.
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

from gates.attacks import make_attack
from gates.errors import GateInputError
from gates.features import AttackFeatures, compute_features, softmax_posteriors
from gates.metrics import evaluate_attack, resolution
from gates.policy import GatePolicy, check_policy
from gates.progress import Progress, SilentProgress
from gates.result import AttackMetrics, GateResult, ModelAudit, ShadowSummary
from gates.sampling import balanced_by_class
from gates.seeds import derive_seed
from gates.shadows import ShadowPlan, ShadowTrainer, TrainedShadow, plan_shadows, train_shadows

MODEL_KINDS = ("original", "pruned")


@dataclass(frozen=True, eq=False)
class GateInputs:
    """The victim and its data, as the core hands them over.

    `inputs` and `labels` are the whole dataset (indices below point into them). `dev_fraction`
    is the victim's dev / (members + dev): each shadow carves its dev split in the same ratio.
    `train_shadow` is the victim's pipeline function with the recipe bound.
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


def select_evaluation(members: np.ndarray, holdout: np.ndarray, labels: np.ndarray, policy: GatePolicy) -> EvaluationSet:
    """Balanced and stratified: as many members as non-members in every class."""
    rng = np.random.default_rng(derive_seed(policy.seed, "evaluation"))
    chosen_members, chosen_nonmembers = balanced_by_class(members, holdout, labels, rng, per_side=policy.eval_size or None)
    if len(chosen_members) < policy.min_eval_size:
        raise GateInputError(
            f"the evaluation set holds {len(chosen_members)} members and {len(chosen_nonmembers)} non-members after balancing "
            f"by class; a meaningful gate needs at least {policy.min_eval_size} per side: raise data.members and data.holdout"
            + (" (or gate.eval_size)" if policy.eval_size else "")
        )
    return EvaluationSet(chosen_members, chosen_nonmembers)


def check_feasible(
    *, labels: np.ndarray, num_classes: int, members: np.ndarray, holdout: np.ndarray, shadow_pool: np.ndarray, policy: GatePolicy
) -> EvaluationSet:
    """Everything `run_gate` refuses before any training, needing no model; returns the evaluation set.

    A caller that trains the victim first (prunectl's `compress`) calls it before training, so
    data too small for a meaningful gate costs nothing and leaves nothing behind.
    """
    check_policy(policy)
    for name, other in (("members", members), ("holdout", holdout)):
        overlap = np.intersect1d(shadow_pool, other)
        if len(overlap):
            raise GateInputError(f"{len(overlap)} samples are in both the shadow pool and {name}; the splits must be disjoint")
    minimum = 4 * num_classes
    if len(shadow_pool) < minimum:
        raise GateInputError(
            f"the shadow pool holds {len(shadow_pool)} samples; shadows need at least {minimum} "
            f"(2 per class on each side): raise data.shadow_pool"
        )
    return select_evaluation(members, holdout, np.asarray(labels, dtype=np.int64), policy)


def run_gate(inputs: GateInputs, policy: GatePolicy, progress: Progress | None = None) -> GateResult:
    """Audit the pruned (and original) victim model; see the module docstring for failure modes."""
    progress = progress or SilentProgress()
    labels = np.asarray(inputs.labels, dtype=np.int64)
    evaluation = check_feasible(
        labels=labels,
        num_classes=inputs.num_classes,
        members=inputs.members,
        holdout=inputs.holdout,
        shadow_pool=inputs.shadow_pool,
        policy=policy,
    )
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    run = _GateRun(inputs, policy, labels, evaluation, progress, seconds)
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
        self, inputs: GateInputs, policy: GatePolicy, labels: np.ndarray, evaluation: EvaluationSet, progress: Progress, seconds: dict[str, float]
    ) -> None:
        self.inputs = inputs
        self.policy = policy
        self.labels = labels
        self.evaluation = evaluation
        self.progress = progress
        self.seconds = seconds
        self.shadow_summaries: tuple[ShadowSummary, ...] = ()
        self.warnings: list[str] = []
        self.resolution = resolution(len(evaluation.members), len(evaluation.nonmembers))

    # -- stages ---------------------------------------------------------------------------

    def execute(self) -> GateResult:
        plans = plan_shadows(
            self.inputs.shadow_pool, self.labels, count=self.policy.shadows, dev_fraction=self.inputs.dev_fraction, seed=self.policy.seed
        )
        stage = time.perf_counter()
        shadows = train_shadows(plans, self.inputs.train_shadow, self.progress)
        self.seconds["shadows"] = time.perf_counter() - stage

        kinds = MODEL_KINDS if self.policy.audit_original and self.inputs.original_model is not None else ("pruned",)
        holdout_accuracy = {kind: self._accuracy(self._victim_model(kind)) for kind in kinds}
        self._check_shadows(shadows, holdout_accuracy)

        stage = time.perf_counter()
        victim_features = {kind: self._features(self._victim_model(kind), self.evaluation.indices, kind, "victim") for kind in kinds}
        shadow_sets = self._shadow_training_sets(plans)
        shadow_features = {kind: self._shadow_features(shadows, shadow_sets, kind) for kind in kinds}
        self.seconds["features"] = time.perf_counter() - stage

        stage = time.perf_counter()
        audits = {kind: self._audit(kind, shadow_features[kind], victim_features[kind], holdout_accuracy[kind]) for kind in kinds}
        self.seconds["attacks"] = time.perf_counter() - stage
        return self._verdict(audits.get("original"), audits["pruned"])

    def _victim_model(self, kind: str) -> nn.Module:
        model = self.inputs.pruned_model if kind == "pruned" else self.inputs.original_model
        assert model is not None
        return model

    def _features(self, model: nn.Module, indices: np.ndarray, kind: str, who: str) -> AttackFeatures:
        return compute_features(
            model,
            self.inputs.inputs,
            self.labels,
            indices,
            num_classes=self.inputs.num_classes,
            samples=self.policy.sensitivity_samples,
            eps=self.policy.sensitivity_eps,
            seed=derive_seed(self.policy.seed, "features", kind, who),
            device=torch.device(self.policy.device),
        )

    def _accuracy(self, model: nn.Module) -> float:
        """Holdout accuracy of a victim model: every holdout sample, not just the evaluation set."""
        return _accuracy(model, self.inputs.inputs, self.labels, self.inputs.holdout, torch.device(self.policy.device))

    def _shadow_training_sets(self, plans: tuple[ShadowPlan, ...]) -> list[EvaluationSet]:
        """Per shadow: its members and non-members, balanced by class like the evaluation set."""
        sets = []
        cap = self.policy.attack_train_size // len(plans) if self.policy.attack_train_size else None
        for plan in plans:
            rng = np.random.default_rng(derive_seed(self.policy.seed, "shadow-balance", plan.index))
            members, nonmembers = balanced_by_class(plan.members, plan.nonmembers, self.labels, rng, per_side=cap)
            sets.append(EvaluationSet(members, nonmembers))
        return sets

    def _shadow_features(self, shadows: list[TrainedShadow], sets: list[EvaluationSet], kind: str) -> tuple[AttackFeatures, np.ndarray]:
        parts, membership = [], []
        with self.progress.task(f"attack features ({kind})", total=len(shadows)) as bar:
            for shadow, chosen in zip(shadows, sets):
                model = shadow.pruned_model if kind == "pruned" else shadow.base_model
                parts.append(self._features(model, chosen.indices, kind, f"shadow-{shadow.plan.index}"))
                membership.append(chosen.membership)
                bar.advance()
        features = AttackFeatures.concat(parts)
        leaked = np.intersect1d(features.indices, self.evaluation.indices)
        if len(leaked):
            raise RuntimeError(f"{len(leaked)} evaluation samples reached the attack's training data; refusing to score")
        return features, np.concatenate(membership)

    def _check_shadows(self, shadows: list[TrainedShadow], victim_accuracy: dict[str, float]) -> None:
        """Refuse an attack learned from shadows much worse than the victim (they mislead it)."""
        summaries = []
        device = torch.device(self.policy.device)
        for shadow in shadows:
            held_out = shadow.plan.nonmembers
            base = _accuracy(shadow.base_model, self.inputs.inputs, self.labels, held_out, device)
            pruned = _accuracy(shadow.pruned_model, self.inputs.inputs, self.labels, held_out, device)
            summaries.append(
                ShadowSummary(
                    shadow.plan.index,
                    shadow.plan.seed,
                    len(shadow.plan.members),
                    len(shadow.plan.dev),
                    len(held_out),
                    base,
                    pruned,
                    shadow.seconds,
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

    def _audit(self, kind: str, shadow: tuple[AttackFeatures, np.ndarray], victim: AttackFeatures, holdout_accuracy: float) -> ModelAudit:
        shadow_features, shadow_membership = shadow
        membership = self.evaluation.membership
        seed = derive_seed(self.policy.seed, "attack", kind)
        all_metrics: list[AttackMetrics] = []
        scores: dict[str, np.ndarray] = {}
        with self.progress.task(f"attacks on the {kind} model", total=len(self.policy.attacks)) as bar:
            for name in self.policy.attacks:
                attack = make_attack(name, self.policy.options, seed=seed, device=self.policy.device)
                title = f"attacks on the {kind} model: {name}"
                bar.advance(0, description=title)
                attack.fit(
                    shadow_features,
                    shadow_membership,
                    on_epoch=lambda epoch, total, title=title: bar.advance(0, description=f"{title} (epoch {epoch}/≤{total})"),
                )
                attack_scores = np.asarray(attack.score(victim), dtype=np.float64)
                scores[name] = attack_scores
                measured = evaluate_attack(
                    name,
                    attack_scores,
                    membership,
                    attack.threshold,
                    resamples=self.policy.bootstrap,
                    seed=derive_seed(self.policy.seed, "bootstrap", kind, name),
                )
                all_metrics.append(dataclasses.replace(measured, threshold_source=attack.threshold_source))
                bar.advance()
            bar.advance(0, description=f"attacks on the {kind} model")
        return ModelAudit(kind, holdout_accuracy, tuple(all_metrics), scores, membership)

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
                        f"{metrics.attack} on the {audit.model} model: its shadow-chosen threshold calls every sample a {side} "
                        f"(it found no usable signal in the shadow data), so its advantage is 0 by construction"
                    )
        gated = [pruned.metrics(name) for name in policy.attacks]
        broken = [m.attack for m in gated if not m.is_finite]
        if broken:
            return self._result(
                "error", f"not passed: {', '.join(broken)} produced NaN figures; the gate cannot establish the leakage", original, pruned
            )
        figure = {m.attack: (m.advantage_high if policy.strict else m.advantage) for m in gated}
        deciding = max(figure, key=lambda name: figure[name])
        value = figure[deciding]
        what = "upper 95% bound of the advantage" if policy.strict else "advantage"
        if value > policy.max_advantage:
            verdict, reason = "fail", f"{deciding} {what} {value:.3f} exceeds max_advantage {policy.max_advantage:.3f}"
        else:
            verdict, reason = "pass", f"highest {what} {value:.3f} ({deciding}) is within max_advantage {policy.max_advantage:.3f}"
        return self._result(verdict, reason, original, pruned, deciding=deciding, value=value)

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
    ) -> GateResult:
        return GateResult(
            verdict=verdict,
            reason=reason,
            max_advantage=self.policy.max_advantage,
            strict=self.policy.strict,
            gated_attacks=tuple(self.policy.attacks),
            deciding_attack=deciding,
            gated_value=value,
            resolution=self.resolution,
            warnings=tuple(self.warnings),
            pruned=pruned,
            original=original,
            shadows=self.shadow_summaries,
            n_members=len(self.evaluation.members),
            n_nonmembers=len(self.evaluation.nonmembers),
            seed=self.policy.seed,
            settings={**self.policy.to_dict(), **self.inputs.extra_settings},
            seconds=self.seconds,
            error=error,
        )

    def error_result(self, detail: str) -> GateResult:
        return self._result("error", f"not passed: the gate could not finish ({detail})", None, None, error=detail)


class ShadowQualityError(RuntimeError):
    """A shadow model trained far worse than the victim: the gate refuses to attack with it."""


def _accuracy(model: nn.Module, inputs: torch.Tensor, labels: np.ndarray, indices: np.ndarray, device: torch.device) -> float:
    if len(indices) == 0:
        return float("nan")
    predicted = softmax_posteriors(model, inputs, indices, chunk_size=1024, device=device).argmax(axis=1)
    return float(np.mean(predicted == labels[indices]))
