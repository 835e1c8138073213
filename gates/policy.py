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
from gates.settings import BOOLEAN, Options, above, at_least, declared, distinct_names, invalid_message, problems, setting, with_options, within

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


def check_policy(policy: GateSettings) -> None:
    """Refuse a setting outside its declared range (GateInputError, one line), attack settings included."""
    for dotted, value, allowed in problems(policy, declared(GateSettings), prefix="gate."):
        raise GateInputError(invalid_message(dotted, value, allowed))
    for name in policy.attacks:
        attack_settings_of(name, policy.options)
