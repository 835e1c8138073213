"""The recipe: one frozen object that reproduces a run, for the victim and every shadow alike.

Every field is declared once, with its default, the values it accepts and a line of help: the
core sections here; the `[gate]` section by the gate itself (`gates.policy.GateSettings`); and
each defense's and attack's own settings by that extension, in the `options` of its section.
Validation, `prunectl init`'s template, the CLI's flags and the TOML and environment names
(`prunectl.config`) are all read from these declarations.

A recipe is built by :func:`prunectl.config.resolve` from defaults, a TOML file, `PRUNECTL_*`
environment variables and CLI flags, then validated here before any work starts. Every error
names the field as the TOML file spells it and the values it accepts.

This is the leaf the rest of prunectl stands on: it imports neither torch nor numpy, so that
reading or refusing a recipe (`prunectl init`, a bad flag) takes a fraction of a second.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exporters.options import DEFAULT_OPSET, OPSET_RANGE, Optimization, Quantization, SparseStorage, choices
from gates.attacks import attack_settings
from gates.policy import GateSettings
from gates.settings import BOOLEAN, Declared, Options, Rule, above, at_least, declared, invalid_message, is_integer, setting, with_options, within
from prunectl.artifacts import EXPORT_FORMATS
from prunectl.defenses import DEFENSES, defense_settings
from prunectl.errors import RecipeError
from prunectl.optimizers import OPTIMIZERS
from prunectl.pruning.schedule import SCHEDULES
from prunectl.pruning.scopes import CHANNEL_IMPORTANCES, SCOPES, STRUCTURES

DEVICES = ("cpu", "cuda", "auto")
DATA_SOURCE_FORMS = "digits | fashion-mnist[:DIR] | imagefolder:DIR | npz:FILE | csv:FILE"
MODEL_SOURCE_FORMS = "builtin:cnn | builtin:mlp | torchvision:ARCH | torchscript:FILE | state-dict:FILE"

NON_EMPTY = Rule("a non-empty string", lambda value: isinstance(value, str) and bool(value))
SPLIT_SIZE = Rule("an integer >= 1, or unset for the 4:1:4:12 default", lambda value: is_integer(value) and value >= 1)
RUN_NAME = Rule(
    "a non-empty name without '/' or control characters (newline, tab, ...)",
    # The name becomes a directory name and appears in messages, which must stay one line.
    lambda name: isinstance(name, str)
    and bool(name)
    and "/" not in name
    and name not in (".", "..")
    and not any(unicodedata.category(c) == "Cc" for c in name),
)


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is split.

    Split sizes left at `None` follow the ratio members:dev:holdout:shadow_pool = 4:1:4:12, so
    members and holdout are the same size and, once the gate has reserved a quarter of the pool
    for calibration, each shadow trains on a random half of the rest: about 0.9× the victim's
    members + dev. On `digits` (1,797 samples) that is 342/85/342/1028.
    """

    note = "Where the data comes from and how it is split (fixed by the seed, recorded in the run directory)."

    source: str = setting("digits", help=DATA_SOURCE_FORMS, rule=Rule(DATA_SOURCE_FORMS, NON_EMPTY.accepts))
    label_column: str = setting("label", help="csv only: the column holding the class", rule=NON_EMPTY)
    image_size: int = setting(32, help="imagefolder only: images are resized to image_size x image_size (>= 4)", rule=at_least(4))
    members: int | None = setting(
        None,
        help="trains the released model (>= 1); unset: 4/21 of the data (members:dev:holdout:shadow_pool = 4:1:4:12)",
        rule=SPLIT_SIZE,
        example=400,
    )
    dev: int | None = setting(None, help="model selection only (>= 1); unset: 1/21 of the data", rule=SPLIT_SIZE, example=100)
    holdout: int | None = setting(
        None, help="never trained on: test accuracy and the gate's non-members (>= 1); unset: 4/21 of the data", rule=SPLIT_SIZE, example=400
    )
    shadow_pool: int | None = setting(
        None, help="the data of the gate's shadow models (>= 1); unset: the rest (12/21)", rule=SPLIT_SIZE, example=900
    )


@dataclass(frozen=True)
class ModelSpec:
    """The architecture (and optionally a base checkpoint to start from instead of training)."""

    note = "The architecture, and optionally base weights to prune instead of training them."

    source: str = setting("builtin:cnn", help=MODEL_SOURCE_FORMS, rule=Rule(MODEL_SOURCE_FORMS, NON_EMPTY.accepts))
    factory: str | None = setting(
        None, help="state-dict:FILE only: module:function that builds the architecture", rule=NON_EMPTY, example="mynets:make"
    )
    widths: tuple[int, ...] = setting(
        (256, 128),
        help="builtin:mlp only: hidden layer widths, integers >= 1",
        rule=Rule("one or more integers >= 1", lambda value: len(value) >= 1 and all(is_integer(w) and w >= 1 for w in value)),
    )
    checkpoint: str | None = setting(
        None, help="state-dict weights to prune instead of training a base model", rule=NON_EMPTY, example="base.pt"
    )


@dataclass(frozen=True)
class TrainSpec:
    """Base training on the members split (skipped when a base checkpoint is given).

    10 epochs by default: the more epochs, the more the base model memorises its members, and
    the embedded default must pass its own gate. After issue #17 (the gate's units at one thread)
    15 epochs failed it at 2 of 5 seeds, the default seed included (+0.119, modified_entropy),
    12 at 1 of 5 (seed 0 again), 10 at none, for about 5 points of pruned holdout accuracy
    (BENCHMARKS.md, "compress": `default` against `epochs-15` and `epochs-12`); weight decay 0.02
    instead of 0.01 did not help. Weight decay 0.01 by default (it applies to fine-tuning too):
    against the gate with RMIA and LiRA, before issue #17, the embedded default without it passed
    3 of 5 seeds and failed the default seed at +0.207 (LiRA); with it, 4 of 5. 0.03 cost 9
    points and still failed.
    """

    note = "Base training on the members split (skipped when model.checkpoint is set)."

    epochs: int = setting(10, help="base training epochs (>= 1)", rule=at_least(1))
    batch_size: int = setting(64, help="batch size for base training and fine-tuning (>= 1)", rule=at_least(1))
    optimizer: str = setting("adam", help="{choices}", choices=OPTIMIZERS.names)
    lr: float = setting(1e-3, help="base training learning rate (> 0)", rule=above(0))
    momentum: float = setting(0.9, help="sgd only: in [0, 1)", rule=within(0, 1, high_open=True))
    weight_decay: float = setting(0.01, help="weight decay in base training and fine-tuning (>= 0)", rule=at_least(0, integer=False))


@dataclass(frozen=True)
class PruneSpec:
    """Iterative magnitude pruning: `rounds` × (prune to the round's target, fine-tune).

    The classifier (last layer) stays dense by default: it holds ~2% of the builtin CNN's
    weights, and pruning it to ~73% (what global ranking did) made the pruned accuracy swing
    between seeds (digits, 6 seeds: 90.0-94.5% against 92.5-95.2% with it dense; BENCHMARKS.md,
    "classifier-dense"), and the gate refuses shadows that land low. `target_sparsity` counts
    the pruned layers only.

    With `structure = "channel"` whole output channels go (`prunectl.pruning.channels`): the
    target then counts every conv and linear weight of the model against the dense model (the
    classifier's input columns and the first layer's output rows shrink too, so both count),
    within the channel grid's tolerance (2 points); the classifier's outputs are never pruned,
    and `keep_first_dense` keeps the first layer's output channels.
    """

    note = "Iterative magnitude pruning: rounds x (prune to the round's sparsity, fine-tune epochs_per_round)."

    target_sparsity: float = setting(
        0.9,
        help="fraction of conv/linear weights removed after the last round (set to zero, or gone with their channel), in [0, 1)",
        rule=within(0, 1, high_open=True, example=0.9),
    )
    structure: str = setting(
        "unstructured",
        help="{choices}: zero single weights (smaller file, same speed), or remove whole channels (a smaller, faster dense model)",
        choices=STRUCTURES,
    )
    round_to: int = setting(8, help="channel pruning: channel counts are multiples of this (>= 1; 8 suits CPU kernels)", rule=at_least(1))
    importance: str = setting("l1", help="channel pruning: {choices} group magnitude ranks the channels", choices=CHANNEL_IMPORTANCES)
    rounds: int = setting(5, help="prune-then-fine-tune rounds (>= 1)", rule=at_least(1))
    epochs_per_round: int = setting(3, help="fine-tuning epochs after each round's pruning (>= 1)", rule=at_least(1))
    schedule: str = setting(
        "cubic", help="sparsity per round: {choices} (geometric: 1-(1-s)^(k/R); cubic: Zhu & Gupta)", choices=SCHEDULES.names
    )
    scope: str = setting(
        "global", help="{choices}: one magnitude threshold across layers, or the same sparsity in each layer", choices=SCOPES.names
    )
    keep_first_dense: bool = setting(False, help="true: never prune the first conv/linear layer", rule=BOOLEAN)
    keep_last_dense: bool = setting(True, help="true: never prune the last conv/linear layer (the classifier)", rule=BOOLEAN)
    lr: float = setting(1e-3, help="fine-tuning learning rate (> 0)", rule=above(0))


@with_options(defense_settings)
@dataclass(frozen=True)
class DefenseSpec:
    """The privacy defense applied while fine-tuning the pruned model, and every defense's settings.

    `name` picks the defense; each registered defense (`prunectl.defenses`) declares its own
    settings, held in `options` and readable as attributes (`spec.kl_weight`). The built-in ones:

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

    note = "The privacy defense applied while fine-tuning; the gate's shadow models run it too."

    name: str = setting("wemem", help="{choices}", choices=DEFENSES.names)
    options: Options = field(default_factory=Options)


@dataclass(frozen=True)
class ExportSpec:
    """The ONNX release artifact and how it is benchmarked."""

    note = "The ONNX release artifact (prunectl export) and its benchmark (prunectl bench)."

    format: str = setting("onnx", help="artifact format: {choices}", choices=EXPORT_FORMATS.names)
    opset: int = setting(
        DEFAULT_OPSET,
        help=f"ONNX opset, {OPSET_RANGE[0]} to {OPSET_RANGE[1]}",
        rule=within(*OPSET_RANGE, integer=True, note=f"{DEFAULT_OPSET} is widely supported"),
    )
    sparse: str = setting(
        SparseStorage.AUTO.value,
        help="{choices}: sparse initializers where they are smaller (a size format), or never",
        choices=choices(SparseStorage),
    )
    quantize: str = setting(
        Quantization.NONE.value,
        help="{choices} (int8: the release artifact is INT8, static QDQ for conv models, dynamic for MLPs; the gate audits it)",
        choices=choices(Quantization),
    )
    optimize: str = setting(
        Optimization.NONE.value,
        help="{choices} (basic: onnxruntime's portable graph optimisation done once at export, loaded with it off: less memory)",
        choices=choices(Optimization),
    )
    tolerance: float = setting(1e-4, help="max |logit difference| allowed between torch and onnxruntime (> 0)", rule=above(0))
    bench_threads: int = setting(1, help="prunectl bench: intra-op threads (>= 1; 1: like an edge device)", rule=at_least(1))
    bench_batch: int = setting(1, help="prunectl bench: batch size (>= 1)", rule=at_least(1))


GateSpec = GateSettings
"""The `[gate]` section is the gate's own settings type (`gates.policy`), so it cannot drift from it."""


@dataclass(frozen=True)
class Recipe:
    name: str | None = setting(
        None, help="run directory runs/<name> (override with --out); unset: the data source's kind", rule=RUN_NAME, example="my-model"
    )
    seed: int = setting(0, help="integer >= 0; the splits, initialisation and shuffling all derive from it", rule=at_least(0))
    device: str = setting("cpu", help="{choices}", choices=DEVICES)
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
        """Top-level fields, then each section as a table of its settings (extension settings included)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in TOP_LEVEL}
        for item in fields():
            if item.section is not None:
                out.setdefault(item.section, {})[item.name] = item.get(self)
        return out


SECTIONS: dict[str, type] = {
    "data": DataSpec,
    "model": ModelSpec,
    "train": TrainSpec,
    "prune": PruneSpec,
    "defense": DefenseSpec,
    "export": ExportSpec,
    "gate": GateSpec,
}
TOP_LEVEL = tuple(item.name for item in declared(Recipe))
SECTION_OPTIONS = {"defense": defense_settings, "gate": attack_settings}
"""The sections whose `options` hold extensions' settings, and where those are declared."""


@dataclass(frozen=True)
class RecipeField:
    """One setting of the recipe: its dotted name, its section, and its declaration.

    `in_options` marks an extension's setting, kept in its section's `options`."""

    dotted: str
    section: str | None
    declaration: Declared
    in_options: bool = False

    @property
    def name(self) -> str:
        return self.declaration.name

    def get(self, recipe: Recipe) -> Any:
        holder: Any = recipe if self.section is None else getattr(recipe, self.section)
        return holder.options[self.name] if self.in_options else getattr(holder, self.name)


def fields() -> list[RecipeField]:
    """Every setting a recipe has, in file order: core fields, then each section's (extensions' last).

    Asked anew each time, because extensions can register after import (a test's defense)."""
    found = [RecipeField(item.name, None, item) for item in declared(Recipe)]
    for section, spec in SECTIONS.items():
        found += [RecipeField(f"{section}.{item.name}", section, item) for item in declared(spec)]
        if section in SECTION_OPTIONS:
            found += [RecipeField(f"{section}.{item.name}", section, item, True) for item in SECTION_OPTIONS[section]().values()]
    return found


def validate(recipe: Recipe) -> Recipe:
    """Check every field's value; sources and paths are checked by their registries later."""
    for problem in _problems(recipe):
        raise RecipeError(problem)
    return recipe


def _problems(recipe: Recipe) -> Iterator[str]:
    selected = {"defense": {recipe.defense.name}, "gate": set(recipe.gate.attacks)}
    for item in fields():
        value = item.get(recipe)
        allowed = item.declaration.problem(value)
        if allowed is not None:
            yield invalid_message(item.dotted, value, allowed)
        elif item.in_options and value is not None and item.declaration.default is None:
            # An optional setting of an extension that is not selected would be silently ignored.
            owners = item.declaration.owners
            if not set(owners) & selected[str(item.section)]:
                chooser = "defense.name" if item.section == "defense" else "gate.attacks"
                current = recipe.defense.name if item.section == "defense" else ",".join(recipe.gate.attacks)
                wanted = " or ".join(repr(o) for o in owners)
                yield invalid_message(item.dotted, value, f"unset: only {chooser} = {wanted} uses it (it is {current!r})")
