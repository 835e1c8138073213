"""What the gate measures and when it fails: its settings, declared once (DESIGN.md, the contract).

`GateSettings` is what a recipe's `[gate]` section sets: `prunectl`'s recipe takes it as it is,
so its fields, defaults, accepted values and help text are written here and nowhere else. The
section also holds every registered attack's own settings (`samia_lr`, ...), in `options`.
`GatePolicy` adds what the caller decides rather than the recipe: the seed, the device, and
the smallest evaluation set the gate accepts.

Torch-free, so that reading or refusing a recipe stays instant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gates.attacks import DEFAULT_ATTACKS, attack_names, attack_settings, attack_settings_of
from gates.errors import GateInputError
from gates.settings import (
    BOOLEAN,
    Options,
    Rule,
    above,
    at_least,
    declared,
    distinct_names,
    invalid_message,
    is_number,
    problems,
    setting,
    with_options,
    within,
)

DEFAULT_MAX_TPR_AT_FPR = 0.05
"""The low-FPR criterion's limit when the recipe leaves `max_tpr_at_fpr` unset: 5× what chance
reaches at the target FPR (TPR = FPR), i.e. an attacker who accuses 1% of non-members finds no
more than 5% of the members (BENCHMARKS.md, "Privacy gate", says how it was chosen)."""

MIN_EXPECTED_FALSE_POSITIVES = 10
"""A false-positive rate is resolved only where it means at least this many false positives,
on the calibration set (which sets the threshold) and on the evaluation's non-members (which
measure it): 4 expected false positives (1% of 399) is a guess, not a rate."""

MIN_CALIBRATION_SIZE = 100
CALIBRATION_AUTO_SHARE = 0.25
CALIBRATION_AUTO_MAX = 2000

def _up_to_half(example: float) -> Rule:
    return Rule(f"a number in (0, 0.5], e.g. {example}", lambda value: is_number(value) and 0 < value <= 0.5)


CALIBRATION_SIZE = Rule(
    f"0 (a quarter of the shadow pool, within {MIN_CALIBRATION_SIZE} to {CALIBRATION_AUTO_MAX}) or an integer >= {MIN_CALIBRATION_SIZE}",
    lambda value: isinstance(value, int) and not isinstance(value, bool) and (value == 0 or value >= MIN_CALIBRATION_SIZE),
)

@with_options(attack_settings)
@dataclass(frozen=True)
class GateSettings:
    """The privacy release gate's settings: a recipe's `[gate]` section.

    The gated advantage is the maximum over `attacks` (SAMIA and the threshold family by
    default), so the gate never reports less leakage than the simplest attack finds.
    `eval_size` caps the evaluation set per side (0: every class-balanced member/holdout pair).
    `strict` gates on the upper end of the 95% interval instead of the point estimate.
    `max_shadow_accuracy_drop` is how far (0.10 = 10 points) a shadow's holdout accuracy may fall
    below the victim's before the attack is refused: an attack trained on worse models learns the
    wrong decision boundary. `attack_train_size` caps the shadow members (and as many
    non-members) the attacks learn from, split evenly over the shadows (0: all): every row costs
    `sensitivity_samples` + 1 forward passes per model audited, and past a few thousand rows per
    side the attacks stop improving while the gate's time keeps growing.
    """

    note = "The privacy release gate: fails when the strongest attack's advantage (TPR - FPR) exceeds max_advantage."

    attacks: tuple[str, ...] = setting(
        DEFAULT_ATTACKS, help="one or more of {choices}; the strongest decides", rule=distinct_names(attack_names), choices=attack_names
    )
    max_advantage: float = setting(0.10, help="fail above this advantage, in [0, 1]", rule=within(0, 1, example=0.1))
    strict: bool = setting(
        False, help="true: fail when the upper end of the 95% interval exceeds max_advantage (for CI)", rule=BOOLEAN
    )
    shadows: int = setting(4, help="shadow models, each on a random half of the shadow pool (>= 1)", rule=at_least(1, note="4 is the default"))
    eval_size: int = setting(
        0,
        help="evaluation samples per side (>= 0); 0: every class-balanced member/holdout pair",
        rule=at_least(0, note="0: use every balanced pair"),
    )
    max_shadow_accuracy_drop: float = setting(
        0.10,
        help="refuse shadows less accurate than the victim by more than this, in [0, 1] (0.1: 10 points)",
        rule=within(0, 1, note="0.10 = 10 points"),
    )
    sensitivity_samples: int = setting(10, help="SAMIA: Gaussian perturbations per sample for the sensitivity feature (>= 1)", rule=at_least(1))
    sensitivity_eps: float = setting(1e-3, help="SAMIA: the scale of those perturbations (> 0)", rule=above(0))
    bootstrap: int = setting(1000, help="resamples for the 95% interval (>= 100)", rule=at_least(100, note="bootstrap resamples"))
    audit_original: bool = setting(True, help="true: also attack the unpruned model, to show what pruning did to leakage", rule=BOOLEAN)
    attack_train_size: int = setting(
        6000,
        help="cap on shadow members (and as many non-members) the attacks learn from (>= 0); 0: all",
        rule=at_least(0, note="0: every shadow sample"),
    )
    max_tpr_at_fpr: float | None = setting(
        None,
        help=(
            "fail when an attack's TPR at target_fpr (threshold from the calibration set) exceeds this, in [0, 1]; "
            f"unset: {DEFAULT_MAX_TPR_AT_FPR} where the data resolve target_fpr, else reported as not resolvable; "
            "set: data that cannot resolve target_fpr are refused; 1: off"
        ),
        rule=within(0, 1),
        example=DEFAULT_MAX_TPR_AT_FPR,
    )
    target_fpr: float = setting(
        0.01, help="the false-positive rate of the low-FPR criterion, in (0, 0.5]", rule=_up_to_half(0.01)
    )
    calibration_size: int = setting(
        0,
        help=(
            "known non-members reserved from the shadow pool (no shadow trains on them): they set every attack's "
            "low-FPR threshold and are RMIA's population; 0: a quarter of the pool, at least 100 and at most 2000"
        ),
        rule=CALIBRATION_SIZE,
    )
    threshold_split: float = setting(
        0.2,
        help=(
            "share of the victim's balanced member/holdout pairs set aside, not evaluated, to choose the reference "
            "attacks' (rmia, lira) advantage thresholds, in (0, 0.5]"
        ),
        rule=_up_to_half(0.2),
    )
    per_class: bool = setting(
        False,
        help="true: also fail when any class (with per_class_min samples per side) exceeds the thresholds (Holm-corrected)",
        rule=BOOLEAN,
    )
    per_class_min: int = setting(50, help="members (and non-members) a class needs to be judged on its own (>= 10)", rule=at_least(10))
    epsilon_delta: float = setting(1e-5, help="the delta of the empirical epsilon estimate, in [0, 1)", rule=within(0, 1, high_open=True))
    options: Options = field(default_factory=Options)
    """Every registered attack's settings (`samia_lr`, `threshold_min_per_class`, ...)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields and the attack settings, flat (as the `[gate]` section spells them)."""
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self) if item.name != "options"}
        return {**values, **self.options}


MIN_EVAL_SIZE = 100
"""Members (and as many non-members) an evaluation set needs, at least, for a meaningful verdict."""


@with_options(attack_settings)
@dataclass(frozen=True)
class GatePolicy(GateSettings):
    """The settings plus what the caller decides: the seed, the device, the smallest evaluation set."""

    min_eval_size: int = MIN_EVAL_SIZE
    seed: int = 0
    device: str = "cpu"

    @property
    def tpr_limit(self) -> float:
        """The low-FPR criterion's limit: the recipe's, or the default where it left it unset."""
        return DEFAULT_MAX_TPR_AT_FPR if self.max_tpr_at_fpr is None else float(self.max_tpr_at_fpr)

    @property
    def tpr_required(self) -> bool:
        """The recipe asked for the low-FPR criterion: data that cannot resolve it are refused, not reported."""
        return self.max_tpr_at_fpr is not None and self.max_tpr_at_fpr < 1

    def calibration_count(self, pool_size: int) -> int:
        """How many shadow-pool samples the calibration slice takes."""
        if self.calibration_size:
            return int(self.calibration_size)
        return max(MIN_CALIBRATION_SIZE, min(CALIBRATION_AUTO_MAX, int(pool_size * CALIBRATION_AUTO_SHARE)))

    def resolvable(self, fpr: float, calibration: int, nonmembers: int) -> bool:
        """Whether a false-positive rate means enough false positives on both sets (see MIN_EXPECTED_FALSE_POSITIVES)."""
        return min(calibration, nonmembers) * fpr >= MIN_EXPECTED_FALSE_POSITIVES - 1e-9


def check_policy(policy: GateSettings) -> None:
    """Refuse a setting outside its declared range (GateInputError, one line), attack settings included."""
    for dotted, value, allowed in problems(policy, declared(GateSettings), prefix="gate."):
        raise GateInputError(invalid_message(dotted, value, allowed))
    for name in policy.attacks:
        attack_settings_of(name, policy.options)
