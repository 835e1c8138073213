"""Recipe options shared by the commands: one definition per flag, one map from flag to field.

`prune` and `compress` take the same recipe flags; defining each once here (type, help text,
help panel) keeps their spelling and help from drifting. :data:`RECIPE_FLAGS` maps a command's
parameter name to the recipe field it sets, so `recipe_flags(locals())` builds the flags that
`prunectl.config.resolve` merges over the environment and the config file.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.defenses import DEFENSES, WEMEM_VARIANTS

PRUNING = "Pruning"
SOURCES = "Data and model"
DEFENSE = "Privacy defense"
GATE = "Privacy gate"
RUN = "Run"


class ScheduleChoice(str, Enum):
    geometric = "geometric"
    cubic = "cubic"
    oneshot = "oneshot"


class ScopeChoice(str, Enum):
    global_ = "global"
    layerwise = "layerwise"


class DeviceChoice(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


# Choices come from their one source of truth, so a new defense or variant shows up here unasked.
DefenseChoice = Enum("DefenseChoice", {name: name for name in DEFENSES.names()}, type=str)  # type: ignore[misc]
WememVariant = Enum("WememVariant", {name: name for name in WEMEM_VARIANTS}, type=str)  # type: ignore[misc]

TargetSparsity = Annotated[
    Optional[float], typer.Option(help="Fraction of prunable weights set to zero, in [0, 1) (default: 0.9).", rich_help_panel=PRUNING)
]
Rounds = Annotated[Optional[int], typer.Option(help="Prune-and-fine-tune rounds (default: 5).", rich_help_panel=PRUNING)]
EpochsPerRound = Annotated[Optional[int], typer.Option(help="Fine-tuning epochs per round (default: 3).", rich_help_panel=PRUNING)]
Schedule = Annotated[Optional[ScheduleChoice], typer.Option(help="Sparsity per round (default: cubic).", rich_help_panel=PRUNING)]
Scope = Annotated[Optional[ScopeChoice], typer.Option(help="Rank weights across all layers or within each.", rich_help_panel=PRUNING)]
KeepFirstDense = Annotated[
    Optional[bool], typer.Option("--keep-first-dense/--prune-first", help="Leave the first layer dense (default: pruned).", rich_help_panel=PRUNING)
]
KeepLastDense = Annotated[
    Optional[bool],
    typer.Option("--keep-last-dense/--prune-last", help="Leave the last layer, the classifier, dense (default: dense).", rich_help_panel=PRUNING),
]
Data = Annotated[
    Optional[str], typer.Option(help="digits | fashion-mnist[:DIR] | imagefolder:DIR | npz:FILE | csv:FILE", rich_help_panel=SOURCES)
]
Model = Annotated[
    Optional[str],
    typer.Option(help="builtin:cnn | builtin:mlp | torchvision:ARCH | torchscript:FILE | state-dict:FILE", rich_help_panel=SOURCES),
]
ModelFactory = Annotated[
    Optional[str], typer.Option(help="module:function building the architecture for state-dict:FILE.", rich_help_panel=SOURCES)
]
ModelCheckpoint = Annotated[
    Optional[str], typer.Option(help="Base weights (state dict) to prune instead of training a base model.", rich_help_panel=SOURCES)
]
Epochs = Annotated[Optional[int], typer.Option(help="Base-training epochs (when no base checkpoint is given).", rich_help_panel=SOURCES)]
Defense = Annotated[Optional[DefenseChoice], typer.Option(help="Privacy defense while fine-tuning (default: wemem).", rich_help_panel=DEFENSE)]
KlWeight = Annotated[Optional[float], typer.Option(help="kl: weight of the posterior-balancing term (paper: 1-16).", rich_help_panel=DEFENSE)]
WememVariantOption = Annotated[
    Optional[WememVariant], typer.Option(help="wemem: sliding window, risky-sample decay, or both (default: rmr).", rich_help_panel=DEFENSE)
]
Memscores = Annotated[
    Optional[Path], typer.Option(help="wemem: the members' memorization scores (CSV index,score) to use.", rich_help_panel=DEFENSE)
]
MaxAdvantage = Annotated[
    Optional[float], typer.Option(help="Fail when the gated advantage (TPR − FPR) exceeds this, in [0, 1] (default: 0.1).", rich_help_panel=GATE)
]
Strict = Annotated[Optional[bool], typer.Option("--strict/--no-strict", help="Gate on the upper 95% bound (for CI).", rich_help_panel=GATE)]
Shadows = Annotated[Optional[int], typer.Option(help="Shadow models re-running the victim's recipe (default: 4).", rich_help_panel=GATE)]
Attacks = Annotated[
    Optional[str], typer.Option(help="Comma-separated gated attacks; by default samia and the whole threshold family.", rich_help_panel=GATE)
]
EvalSize = Annotated[Optional[int], typer.Option(help="Cap on evaluation samples per side (0: all balanced pairs).", rich_help_panel=GATE)]
Name = Annotated[Optional[str], typer.Option(help="Recipe name (the default run directory name).", rich_help_panel=RUN)]
Seed = Annotated[Optional[int], typer.Option(help="Seed for splits, initialisation and shuffling.", rich_help_panel=RUN)]
Device = Annotated[Optional[DeviceChoice], typer.Option(help="Where to train.", rich_help_panel=RUN)]
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

RECIPE_FLAGS: dict[str, str] = {
    "target_sparsity": "prune.target_sparsity",
    "rounds": "prune.rounds",
    "epochs_per_round": "prune.epochs_per_round",
    "schedule": "prune.schedule",
    "scope": "prune.scope",
    "keep_first_dense": "prune.keep_first_dense",
    "keep_last_dense": "prune.keep_last_dense",
    "data": "data.source",
    "model": "model.source",
    "model_factory": "model.factory",
    "model_checkpoint": "model.checkpoint",
    "epochs": "train.epochs",
    "defense": "defense.name",
    "kl_weight": "defense.kl_weight",
    "wemem_variant": "defense.wemem_variant",
    "memscores": "defense.memscores",
    "max_advantage": "gate.max_advantage",
    "strict": "gate.strict",
    "shadows": "gate.shadows",
    "attacks": "gate.attacks",
    "eval_size": "gate.eval_size",
    "name": "name",
    "seed": "seed",
    "device": "device",
}


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
