"""The recipe: one frozen object that reproduces a run, for the victim and every shadow alike.

A recipe is built by :func:`prunectl.config.resolve` from defaults, a TOML file, `PRUNECTL_*`
environment variables and CLI flags, then validated here before any work starts. Every error
names the field (as it is spelled in the TOML file) and the values it accepts.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from gates.attacks import attack_names
from gates.gate import GatePolicy
from prunectl.defenses import DEFENSES, WEMEM_VARIANTS
from prunectl.errors import RecipeError

SCHEDULES = ("geometric", "cubic", "oneshot")
SCOPES = ("global", "layerwise")
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("cpu", "cuda", "auto")
SPARSE_STORAGE = ("auto", "dense")
QUANTIZATION = ("none", "int8")
RSW_ORDERS = ("h2l", "l2h")


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is split.

    Split sizes left at `None` follow the ratio members:dev:holdout:shadow_pool = 4:1:4:9, so
    members and holdout are the same size and the shadow pool is about twice the members (each
    shadow trains on a random half of it). On `digits` (1,797 samples) that is 399/99/399/900.
    """

    source: str = "digits"
    label_column: str = "label"
    image_size: int = 32
    members: int | None = None
    dev: int | None = None
    holdout: int | None = None
    shadow_pool: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The architecture (and optionally a base checkpoint to start from instead of training)."""

    source: str = "builtin:cnn"
    factory: str | None = None
    widths: tuple[int, ...] = (256, 128)
    checkpoint: str | None = None


@dataclass(frozen=True)
class TrainSpec:
    """Base training on the members split (skipped when a base checkpoint is given)."""

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass(frozen=True)
class PruneSpec:
    """Iterative magnitude pruning: `rounds` × (prune to the round's target, fine-tune).

    The classifier (last layer) stays dense by default: it holds ~2% of the builtin CNN's
    weights, and pruning it to ~73% (what global ranking did) made the pruned accuracy swing
    between seeds (digits, 6 seeds: 90.7-96.2% against 94.0-98.5% with it dense; BENCHMARKS.md,
    "classifier-dense"), and the gate refuses shadows that land low. `target_sparsity` counts
    the pruned layers only.
    """

    target_sparsity: float = 0.9
    rounds: int = 5
    epochs_per_round: int = 3
    schedule: str = "cubic"
    scope: str = "global"
    keep_first_dense: bool = False
    keep_last_dense: bool = True
    lr: float = 1e-3


@dataclass(frozen=True)
class DefenseSpec:
    """The privacy defense applied while fine-tuning the pruned model.

    - `kl` (Yuan & Zhang 2022): cross-entropy + `kl_weight` × KL divergence between the sorted
      posteriors of the two halves of each batch, pulling member and non-member posteriors together.
    - `wemem` (Shang et al. 2025): `rsw` trains each epoch on a sliding window over every class's
      members sorted by memorization score (`rsw_order`: h2l = most memorized first); `rmr` steps
      samples with memorization score >= `rmr_threshold` in their own batches with weight decay
      `rmr_weight_decay`; `swmr` does both. Width and stride 0 mean: derived from the class size
      and the number of fine-tuning epochs so every member is trained on at least once.
    Memorization scores come from `memscore_models` helper models (an even number: complementary
    halves of the members), cached by content; `memscores` loads the victim's from a CSV instead.

    Default: wemem rmr, the best privacy/accuracy trade-off in the defenses benchmark (BENCHMARKS.md,
    "defenses"), with `rmr_threshold` 0.25 rather than the reference's 0.5: on the embedded
    default, 0.5 marks ~8% of members risky and the gate still failed (BENCHMARKS.md, "compress").
    """

    name: str = "wemem"
    kl_weight: float = 4.0
    wemem_variant: str = "rmr"
    rsw_order: str = "h2l"
    rsw_width: int = 0
    rsw_stride: int = 0
    rmr_threshold: float = 0.25
    rmr_weight_decay: float = 0.1
    memscore_models: int = 8
    memscores: str | None = None


@dataclass(frozen=True)
class ExportSpec:
    """The ONNX release artifact and how it is benchmarked."""

    opset: int = 17
    sparse: str = "auto"
    quantize: str = "none"
    tolerance: float = 1e-4
    bench_threads: int = 1
    bench_batch: int = 1


@dataclass(frozen=True)
class GateSpec:
    """The privacy release gate (DESIGN.md, "The gate's contract"); defaults are the gate's own.

    The gated advantage is the maximum over `attacks` (SAMIA and the threshold family by
    default), so the gate never reports less leakage than the simplest attack finds.
    `eval_size` caps the evaluation set per side (0: every class-balanced member/holdout pair).
    `strict` gates on the upper end of the 95% interval instead of the point estimate.
    `attack_train_size` caps the shadow members (and as many non-members) the attacks learn
    from (0: all); each costs `sensitivity_samples` + 1 forward passes per model audited.
    """

    attacks: tuple[str, ...] = GatePolicy.attacks
    max_advantage: float = GatePolicy.max_advantage
    strict: bool = GatePolicy.strict
    shadows: int = GatePolicy.shadows
    eval_size: int = GatePolicy.eval_size
    max_shadow_accuracy_drop: float = GatePolicy.max_shadow_accuracy_drop
    sensitivity_samples: int = GatePolicy.sensitivity_samples
    sensitivity_eps: float = GatePolicy.sensitivity_eps
    bootstrap: int = GatePolicy.bootstrap
    audit_original: bool = GatePolicy.audit_original
    attack_train_size: int = GatePolicy.attack_train_size


@dataclass(frozen=True)
class Recipe:
    name: str | None = None
    seed: int = 0
    device: str = "cpu"
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    prune: PruneSpec = field(default_factory=PruneSpec)
    defense: DefenseSpec = field(default_factory=DefenseSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    gate: GateSpec = field(default_factory=GateSpec)

    @property
    def run_name(self) -> str:
        """The default run directory name: the recipe's name, else the data source's kind."""
        if self.name:
            return self.name
        return self.data.source.split(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {
    "data": DataSpec,
    "model": ModelSpec,
    "train": TrainSpec,
    "prune": PruneSpec,
    "defense": DefenseSpec,
    "export": ExportSpec,
    "gate": GateSpec,
}
TOP_LEVEL = ("name", "seed", "device")


def _require(condition: bool, field_name: str, value: Any, allowed: str) -> None:
    if not condition:
        raise RecipeError(f"{field_name} = {value!r} is invalid; allowed: {allowed}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(recipe: Recipe) -> Recipe:
    """Check every field's value range; sources and paths are checked by their registries."""
    _require(isinstance(recipe.seed, int) and recipe.seed >= 0, "seed", recipe.seed, "an integer >= 0")
    _require(recipe.device in DEVICES, "device", recipe.device, " | ".join(DEVICES))
    if recipe.name is not None:
        # The name becomes a directory name and appears in messages, which must stay one line.
        _require(
            bool(recipe.name)
            and "/" not in recipe.name
            and recipe.name not in (".", "..")
            and not any(unicodedata.category(c) == "Cc" for c in recipe.name),
            "name",
            recipe.name,
            "a non-empty name without '/' or control characters (newline, tab, ...)",
        )

    data = recipe.data
    _require(bool(data.source), "data.source", data.source, "digits | fashion-mnist[:DIR] | imagefolder:DIR | npz:FILE | csv:FILE")
    _require(data.image_size >= 4, "data.image_size", data.image_size, "an integer >= 4")
    for name in ("members", "dev", "holdout", "shadow_pool"):
        size = getattr(data, name)
        _require(size is None or size >= 1, f"data.{name}", size, "an integer >= 1, or unset for the 4:1:4:9 default")

    model = recipe.model
    _require(bool(model.source), "model.source", model.source, "builtin:cnn | builtin:mlp | torchvision:ARCH | torchscript:FILE | state-dict:FILE")
    _require(len(model.widths) >= 1 and all(w >= 1 for w in model.widths), "model.widths", model.widths, "one or more integers >= 1")

    train = recipe.train
    _require(train.epochs >= 1, "train.epochs", train.epochs, "an integer >= 1")
    _require(train.batch_size >= 1, "train.batch_size", train.batch_size, "an integer >= 1")
    _require(train.optimizer in OPTIMIZERS, "train.optimizer", train.optimizer, " | ".join(OPTIMIZERS))
    _require(_is_number(train.lr) and train.lr > 0, "train.lr", train.lr, "a number > 0")
    _require(_is_number(train.momentum) and 0 <= train.momentum < 1, "train.momentum", train.momentum, "a number in [0, 1)")
    _require(_is_number(train.weight_decay) and train.weight_decay >= 0, "train.weight_decay", train.weight_decay, "a number >= 0")

    prune = recipe.prune
    _require(
        _is_number(prune.target_sparsity) and 0 <= prune.target_sparsity < 1,
        "prune.target_sparsity",
        prune.target_sparsity,
        "a number in [0, 1), e.g. 0.9",
    )
    _require(prune.rounds >= 1, "prune.rounds", prune.rounds, "an integer >= 1")
    _require(prune.epochs_per_round >= 1, "prune.epochs_per_round", prune.epochs_per_round, "an integer >= 1")
    _require(prune.schedule in SCHEDULES, "prune.schedule", prune.schedule, " | ".join(SCHEDULES))
    _require(prune.scope in SCOPES, "prune.scope", prune.scope, " | ".join(SCOPES))
    _require(_is_number(prune.lr) and prune.lr > 0, "prune.lr", prune.lr, "a number > 0")

    export = recipe.export
    _require(9 <= export.opset <= 20, "export.opset", export.opset, "an integer from 9 to 20 (17 is widely supported)")
    _require(export.sparse in SPARSE_STORAGE, "export.sparse", export.sparse, " | ".join(SPARSE_STORAGE))
    _require(export.quantize in QUANTIZATION, "export.quantize", export.quantize, " | ".join(QUANTIZATION))
    _require(_is_number(export.tolerance) and export.tolerance > 0, "export.tolerance", export.tolerance, "a number > 0")
    _require(export.bench_threads >= 1, "export.bench_threads", export.bench_threads, "an integer >= 1")
    _require(export.bench_batch >= 1, "export.bench_batch", export.bench_batch, "an integer >= 1")

    gate = recipe.gate
    known_attacks = attack_names()
    _require(
        len(gate.attacks) >= 1 and all(a in known_attacks for a in gate.attacks) and len(set(gate.attacks)) == len(gate.attacks),
        "gate.attacks",
        list(gate.attacks),
        "one or more distinct names of " + " | ".join(known_attacks),
    )
    _require(
        _is_number(gate.max_advantage) and 0 <= gate.max_advantage <= 1, "gate.max_advantage", gate.max_advantage, "a number in [0, 1], e.g. 0.1"
    )
    _require(gate.shadows >= 1, "gate.shadows", gate.shadows, "an integer >= 1 (4 is the default)")
    _require(gate.eval_size >= 0, "gate.eval_size", gate.eval_size, "an integer >= 0 (0: use every balanced pair)")
    _require(
        _is_number(gate.max_shadow_accuracy_drop) and 0 <= gate.max_shadow_accuracy_drop <= 1,
        "gate.max_shadow_accuracy_drop",
        gate.max_shadow_accuracy_drop,
        "a number in [0, 1] (0.10 = 10 points)",
    )
    _require(gate.sensitivity_samples >= 1, "gate.sensitivity_samples", gate.sensitivity_samples, "an integer >= 1")
    _require(_is_number(gate.sensitivity_eps) and gate.sensitivity_eps > 0, "gate.sensitivity_eps", gate.sensitivity_eps, "a number > 0")
    _require(gate.attack_train_size >= 0, "gate.attack_train_size", gate.attack_train_size, "an integer >= 0 (0: every shadow sample)")
    _require(gate.bootstrap >= 100, "gate.bootstrap", gate.bootstrap, "an integer >= 100 (bootstrap resamples)")

    defense = recipe.defense
    _require(defense.name in DEFENSES, "defense.name", defense.name, " | ".join(DEFENSES.names()))
    _require(
        _is_number(defense.kl_weight) and 0 <= defense.kl_weight <= 1000, "defense.kl_weight", defense.kl_weight, "a number in [0, 1000], e.g. 4"
    )
    _require(defense.wemem_variant in WEMEM_VARIANTS, "defense.wemem_variant", defense.wemem_variant, " | ".join(WEMEM_VARIANTS))
    _require(defense.rsw_order in RSW_ORDERS, "defense.rsw_order", defense.rsw_order, " | ".join(RSW_ORDERS))
    _require(defense.rsw_width >= 0, "defense.rsw_width", defense.rsw_width, "an integer >= 0 (0: derived from the data)")
    _require(defense.rsw_stride >= 0, "defense.rsw_stride", defense.rsw_stride, "an integer >= 0 (0: derived from the data)")
    _require(
        _is_number(defense.rmr_threshold) and -1 <= defense.rmr_threshold <= 1,
        "defense.rmr_threshold",
        defense.rmr_threshold,
        "a number in [-1, 1] (memorization scores lie there), e.g. 0.5",
    )
    _require(
        _is_number(defense.rmr_weight_decay) and defense.rmr_weight_decay >= 0,
        "defense.rmr_weight_decay",
        defense.rmr_weight_decay,
        "a number >= 0, e.g. 0.1",
    )
    _require(
        defense.memscore_models >= 4 and defense.memscore_models % 2 == 0,
        "defense.memscore_models",
        defense.memscore_models,
        "an even integer >= 4 (complementary halves; 4 is the least that gives a split-half noise estimate)",
    )
    _require(defense.memscores is None or bool(defense.memscores), "defense.memscores", defense.memscores, "a CSV file path, or unset")
    _require(
        defense.memscores is None or defense.name == "wemem",
        "defense.memscores",
        defense.memscores,
        f"unset: only defense.name = 'wemem' uses memorization scores (it is {defense.name!r})",
    )
    return recipe
