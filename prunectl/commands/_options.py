"""Recipe options shared by the commands: each flag generated from the setting it sets.

`prune` and `compress` take the same recipe flags. Each is made by :func:`recipe_option` from
the setting's declaration (`prunectl.recipe`, the defenses, the gate): its type, its choices and
its help text, with the default named, come from there, so a flag cannot drift from the
recipe. :data:`RECIPE_FLAGS` maps a command's parameter name to the recipe field it sets, so
`recipe_flags(locals())` builds the flags that `prunectl.config.resolve` merges over the
environment and the config file.
"""

from __future__ import annotations

import typing
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.config import unwrap_optional
from prunectl.recipe import fields

PRUNING = "Pruning"
SOURCES = "Data and model"
DEFENSE = "Privacy defense"
GATE = "Privacy gate"
RUN = "Run"
EXECUTION = "Execution (never changes a figure)"
ARTIFACT = "Release artifact"

RECIPE_FLAGS: dict[str, str] = {}
"""Command parameter name → the recipe field its flag sets; filled by :func:`recipe_option`."""

_FIELDS = {item.dotted: item for item in fields()}
"""The recipe's fields when the CLI is built (flags are made once, at import)."""


def _enum(dotted: str, choices: typing.Sequence[str]) -> type[Enum]:
    name = "".join(part.title() for part in dotted.replace(".", "_").split("_")) + "Choice"
    return Enum(name, {choice: choice for choice in choices}, type=str)  # type: ignore[return-value]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def recipe_option(parameter: str, dotted: str, *names: str, panel: str, help: str | None = None, default_words: tuple[str, str] | None = None) -> Any:
    """The `Annotated` type of the flag `parameter` that sets recipe field `dotted`.

    Unset flags are None, so the recipe (file, environment, defaults) decides. `help` replaces
    the declaration's note where a flag needs other words (`{note}` in it stands for the note);
    the default is always appended, in
    `default_words` (true, false) for a boolean pair such as `--keep-last-dense/--prune-last`.
    """
    declaration = _FIELDS[dotted].declaration
    annotation, _ = unwrap_optional(declaration.annotation)
    if declaration.choices is not None and annotation is str:
        kind: Any = _enum(dotted, declaration.choices())
    elif annotation in (int, float, bool, str):
        kind = annotation
    else:  # tuples are typed as comma-separated text, as the environment spells them
        kind = str
    text = (help or "{note}").replace("{note}", declaration.note)
    default = declaration.default
    if default is not None:
        shown = default_words[0 if default else 1] if default_words and isinstance(default, bool) else _shown(default)
        text = f"{text} (default: {shown})"
    RECIPE_FLAGS[parameter] = dotted
    if not text.startswith(" | ".join(declaration.choices() if declaration.choices else ())):
        text = text[:1].upper() + text[1:]  # a sentence; a list of choices keeps its spelling
    return Annotated[Optional[kind], typer.Option(*names, help=text, rich_help_panel=panel)]


TargetSparsity = recipe_option("target_sparsity", "prune.target_sparsity", panel=PRUNING)
Rounds = recipe_option("rounds", "prune.rounds", panel=PRUNING)
EpochsPerRound = recipe_option("epochs_per_round", "prune.epochs_per_round", panel=PRUNING)
Schedule = recipe_option("schedule", "prune.schedule", panel=PRUNING)
Scope = recipe_option("scope", "prune.scope", panel=PRUNING)
Structure = recipe_option("structure", "prune.structure", panel=PRUNING)
RoundTo = recipe_option("round_to", "prune.round_to", panel=PRUNING)
KeepFirstDense = recipe_option(
    "keep_first_dense", "prune.keep_first_dense", "--keep-first-dense/--prune-first", panel=PRUNING, default_words=("dense", "pruned")
)
KeepLastDense = recipe_option(
    "keep_last_dense", "prune.keep_last_dense", "--keep-last-dense/--prune-last", panel=PRUNING, default_words=("dense", "pruned")
)
Quantize = recipe_option("quantize", "export.quantize", panel=ARTIFACT)
Optimize = recipe_option("optimize", "export.optimize", panel=ARTIFACT)
Data = recipe_option("data", "data.source", panel=SOURCES)
Model = recipe_option("model", "model.source", panel=SOURCES)
ModelFactory = recipe_option("model_factory", "model.factory", panel=SOURCES)
ModelCheckpoint = recipe_option("model_checkpoint", "model.checkpoint", panel=SOURCES)
Epochs = recipe_option("epochs", "train.epochs", panel=SOURCES)
Defense = recipe_option("defense", "defense.name", panel=DEFENSE, help="privacy defense while fine-tuning")
KlWeight = recipe_option("kl_weight", "defense.kl_weight", panel=DEFENSE)
WememVariant = recipe_option("wemem_variant", "defense.wemem_variant", panel=DEFENSE)
Memscores = recipe_option("memscores", "defense.memscores", panel=DEFENSE)
MaxAdvantage = recipe_option(
    "max_advantage", "gate.max_advantage", panel=GATE, help="fail when the gated advantage (TPR − FPR) exceeds this, in [0, 1]"
)
Strict = recipe_option("strict", "gate.strict", "--strict/--no-strict", panel=GATE, help="gate on the upper 95% bound (for CI)")
Shadows = recipe_option("shadows", "gate.shadows", panel=GATE, help="shadow models re-running the victim's recipe")
Attacks = recipe_option("attacks", "gate.attacks", panel=GATE, help="comma-separated, {note}")
EvalSize = recipe_option("eval_size", "gate.eval_size", panel=GATE)
Name = recipe_option("name", "name", panel=RUN, help="recipe name (the default run directory name)")
Seed = recipe_option("seed", "seed", panel=RUN, help="seed for splits, initialisation and shuffling")
Device = recipe_option("device", "device", panel=RUN, help="where to train")

Config = Annotated[
    Optional[Path],
    typer.Option(
        help="Recipe file: prunectl.toml, or a pyproject.toml with \\[tool.prunectl] (default: ./prunectl.toml, "
        "else ./pyproject.toml's \\[tool.prunectl], if present).",
        rich_help_panel=RUN,
    ),
]
CacheDir = Annotated[
    Optional[Path], typer.Option(help="Cache of base models and memorization scores (default: user cache).", rich_help_panel=RUN)
]

Workers = Annotated[
    Optional[int],
    typer.Option(
        min=1,
        help="Worker processes for the gate's shadows and attacks (env PRUNECTL_WORKERS; default: every core; 1: all in this "
        "process, for debugging). With --executor ray: the most tasks at once.",
        rich_help_panel=EXECUTION,
    ),
]
ExecutorName = Annotated[
    Optional[str],
    typer.Option(
        "--executor",
        help="Where the gate's units run: local (a process pool) or ray (pip install 'prunectl[ray]') "
        "(env PRUNECTL_EXECUTOR; default: local, or ray when --ray-address is given).",
        rich_help_panel=EXECUTION,
    ),
]
RayAddress = Annotated[
    Optional[str],
    typer.Option(
        help="The Ray cluster to run on: auto on one of its nodes, or host:port of its head (env PRUNECTL_RAY_ADDRESS; "
        "default: RAY_ADDRESS, else a Ray instance started on this machine).",
        rich_help_panel=EXECUTION,
    ),
]


def execution_from_cli(executor: str | None, workers: int | None, ray_address: str | None) -> Any:
    """The `prunectl.executors.Execution` the flags (over the environment) ask for; a bad one exits 2."""
    from prunectl.executors import Execution

    return Execution.from_options(executor, workers, ray_address)


def recipe_flags(arguments: dict[str, Any]) -> dict[str, Any]:
    """A command's arguments (its `locals()`) → dotted recipe fields; unset flags stay None."""
    flags: dict[str, Any] = {}
    for parameter, dotted in RECIPE_FLAGS.items():
        if parameter in arguments:
            value = arguments[parameter]
            flags[dotted] = value.value if isinstance(value, Enum) else str(value) if isinstance(value, Path) else value
    return flags


def resolve_from_cli(config: Path | None, flags: dict[str, Any], base: Any = None) -> Any:
    """The recipe for a command: flags > environment > `--config` (or the discovered file) > `base` or defaults."""
    from prunectl.config import discover_config, resolve

    return resolve(config=config if config is not None else discover_config(), flags=flags, base=base)
