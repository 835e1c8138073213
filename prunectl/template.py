"""The commented recipe file that `prunectl init` writes.

Values come from a :class:`~prunectl.recipe.Recipe` (the defaults unless one is given) and are
written with the same formatting as :func:`prunectl.config.to_toml`, so the template cannot drift
from the defaults; this module only adds one comment per field and per section. Choice lists are
taken from the constants that validation uses, for the same reason.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from gates.attacks import attack_names
from prunectl.config import FIELDS, toml_value
from prunectl.defenses import DEFENSES, WEMEM_VARIANTS
from prunectl.errors import PrunectlError
from prunectl.recipe import (
    DEVICES,
    OPTIMIZERS,
    QUANTIZATION,
    RSW_ORDERS,
    SCHEDULES,
    SCOPES,
    SECTIONS,
    SPARSE_STORAGE,
    TOP_LEVEL,
    Recipe,
)

PYPROJECT_TABLE = "tool.prunectl"


class TemplateTargetError(PrunectlError):
    """The recipe file cannot be written where asked (exists, no such directory, pyproject.toml)."""

# Trailing comments start at this column; a longer `key = value` line gets its comment on the line above.
_COMMENT_COLUMN = 32


def _choices(names: Any) -> str:
    return " | ".join(names)


SECTION_NOTES: dict[str, str] = {
    "data": "Where the data comes from and how it is split (fixed by the seed, recorded in the run directory).",
    "model": "The architecture, and optionally base weights to prune instead of training them.",
    "train": "Base training on the members split (skipped when model.checkpoint is set).",
    "prune": "Iterative magnitude pruning: rounds x (prune to the round's sparsity, fine-tune epochs_per_round).",
    "defense": "The privacy defense applied while fine-tuning; the gate's shadow models run it too.",
    "export": "The ONNX release artifact (prunectl export) and its benchmark (prunectl bench).",
    "gate": "The privacy release gate: fails when the strongest attack's advantage (TPR - FPR) exceeds max_advantage.",
}

FIELD_NOTES: dict[str, str] = {
    "name": "run directory runs/<name> (override with --out); unset: the data source's kind",
    "seed": "integer >= 0; the splits, initialisation and shuffling all derive from it",
    "device": _choices(DEVICES),
    "data.source": "digits | fashion-mnist[:DIR] | imagefolder:DIR | npz:FILE | csv:FILE",
    "data.label_column": "csv only: the column holding the class",
    "data.image_size": "imagefolder only: images are resized to image_size x image_size (>= 4)",
    "data.members": "trains the released model (>= 1); unset: 4/18 of the data (members:dev:holdout:shadow_pool = 4:1:4:9)",
    "data.dev": "model selection only (>= 1); unset: 1/18 of the data",
    "data.holdout": "never trained on: test accuracy and the gate's non-members (>= 1); unset: 4/18 of the data",
    "data.shadow_pool": "the data of the gate's shadow models (>= 1); unset: 9/18 of the data",
    "model.source": "builtin:cnn | builtin:mlp | torchvision:ARCH | torchscript:FILE | state-dict:FILE",
    "model.factory": "state-dict:FILE only: module:function that builds the architecture",
    "model.widths": "builtin:mlp only: hidden layer widths, integers >= 1",
    "model.checkpoint": "state-dict weights to prune instead of training a base model",
    "train.epochs": "base training epochs (>= 1)",
    "train.batch_size": "batch size for base training and fine-tuning (>= 1)",
    "train.optimizer": _choices(OPTIMIZERS),
    "train.lr": "base training learning rate (> 0)",
    "train.momentum": "sgd only: in [0, 1)",
    "train.weight_decay": "weight decay (>= 0)",
    "prune.target_sparsity": "fraction of conv/linear weights set to zero after the last round, in [0, 1)",
    "prune.rounds": "prune-then-fine-tune rounds (>= 1)",
    "prune.epochs_per_round": "fine-tuning epochs after each round's pruning (>= 1)",
    "prune.schedule": f"sparsity per round: {_choices(SCHEDULES)} (geometric: 1-(1-s)^(k/R); cubic: Zhu & Gupta)",
    "prune.scope": f"{_choices(SCOPES)}: one magnitude threshold across layers, or the same sparsity in each layer",
    "prune.keep_first_dense": "true: never prune the first conv/linear layer",
    "prune.keep_last_dense": "true: never prune the last conv/linear layer (the classifier)",
    "prune.lr": "fine-tuning learning rate (> 0)",
    "defense.name": _choices(DEFENSES.names()),
    "defense.kl_weight": "kl: weight of the KL term between sorted posteriors of paired samples, in [0, 1000] (paper: 1-16)",
    "defense.wemem_variant": f"wemem: {_choices(WEMEM_VARIANTS)} (sliding window | risky-sample weight decay | both)",
    "defense.rsw_order": f"rsw: {_choices(RSW_ORDERS)}: windows start at the most memorized members (h2l) or the least (l2h)",
    "defense.rsw_width": "rsw: members per class per epoch (>= 0); 0: half the largest class",
    "defense.rsw_stride": "rsw: window shift per epoch (>= 0); 0: the last epoch's window ends at the last member",
    "defense.rmr_threshold": "rmr: members with memorization score >= this are risky, in [-1, 1]",
    "defense.rmr_weight_decay": "rmr: weight decay on batches of risky members (>= 0); the rest use train.weight_decay",
    "defense.memscore_models": "wemem: helper models on complementary halves of the members (even, >= 4); cached",
    "defense.memscores": "wemem: CSV (index,score) of the members' memorization scores, instead of computing them",
    "export.opset": "ONNX opset, 9 to 20",
    "export.sparse": f"{_choices(SPARSE_STORAGE)}: sparse initializers where they are smaller (a size format), or never",
    "export.quantize": f"{_choices(QUANTIZATION)} (int8: onnxruntime dynamic quantisation)",
    "export.tolerance": "max |logit difference| allowed between torch and onnxruntime (> 0)",
    "export.bench_threads": "prunectl bench: intra-op threads (>= 1; 1: like an edge device)",
    "export.bench_batch": "prunectl bench: batch size (>= 1)",
    "gate.attacks": f"one or more of {_choices(attack_names())}; the strongest decides",
    "gate.max_advantage": "fail above this advantage, in [0, 1]",
    "gate.strict": "true: fail when the upper end of the 95% interval exceeds max_advantage (for CI)",
    "gate.shadows": "shadow models, each on a random half of the shadow pool (>= 1)",
    "gate.eval_size": "evaluation samples per side (>= 0); 0: every class-balanced member/holdout pair",
    "gate.max_shadow_accuracy_drop": "refuse shadows less accurate than the victim by more than this, in [0, 1] (0.1: 10 points)",
    "gate.sensitivity_samples": "SAMIA: Gaussian perturbations per sample for the sensitivity feature (>= 1)",
    "gate.sensitivity_eps": "SAMIA: the scale of those perturbations (> 0)",
    "gate.bootstrap": "resamples for the 95% interval (>= 100)",
    "gate.audit_original": "true: also attack the unpruned model, to show what pruning did to leakage",
    "gate.attack_train_size": "cap on shadow members (and as many non-members) the attacks learn from (>= 0); 0: all",
}

# What a commented-out line shows for a field that is unset (None): an example, not a default.
UNSET_EXAMPLES: dict[str, Any] = {
    "name": "my-model",
    "data.members": 400,
    "data.dev": 100,
    "data.holdout": 400,
    "data.shadow_pool": 900,
    "model.factory": "mynets:make",
    "model.checkpoint": "base.pt",
    "defense.memscores": "scores.csv",
}


def _header(config_path: str, pyproject: bool) -> list[str]:
    lines = ["# A prunectl recipe: everything that reproduces a compression run (data, model, pruning, defense, gate, export)."]
    if pyproject:
        lines.append(f"# Paste these [{PYPROJECT_TABLE}] tables into pyproject.toml.")
    return lines + [
        "# Every key is optional: a missing key takes its default. Commented-out keys are unset (TOML has no null);",
        "# uncomment one to set it. Precedence:",
        "# command-line flag > PRUNECTL_* environment variable (e.g. PRUNECTL_PRUNE_TARGET_SPARSITY) > this file > default.",
        "#",
        f"#   prunectl compress --config {shlex.quote(config_path)}",
    ]


def _field_lines(dotted: str, value: Any) -> list[str]:
    """`key = value  # note`, commented out when the value is unset; a long line gets its note above."""
    key = FIELDS[dotted].name
    assignment = f"{key} = {toml_value(value)}" if value is not None else f"# {key} = {toml_value(UNSET_EXAMPLES[dotted])}"
    if len(assignment) > _COMMENT_COLUMN - 2:
        return [f"# {FIELD_NOTES[dotted]}", assignment]
    return [f"{assignment.ljust(_COMMENT_COLUMN - 2)}  # {FIELD_NOTES[dotted]}"]


def render_template(recipe: Recipe | None = None, *, pyproject: bool = False, config_path: str | None = None) -> str:
    """Every field of `recipe` (default: `Recipe()`) as TOML, each with a one-line note.

    `pyproject=True` nests the tables under `[tool.prunectl]` for pasting into a pyproject.toml,
    which :func:`prunectl.config.load_file` reads the same way. `config_path` only changes the
    command shown in the header.
    """
    recipe = Recipe() if recipe is None else recipe
    config_path = config_path or ("pyproject.toml" if pyproject else "prunectl.toml")
    prefix = f"{PYPROJECT_TABLE}." if pyproject else ""
    lines = _header(config_path, pyproject)
    lines.append("")
    if pyproject:
        lines.append(f"[{PYPROJECT_TABLE}]")
    for name in TOP_LEVEL:
        lines.extend(_field_lines(name, getattr(recipe, name)))
    for section in SECTIONS:
        spec = getattr(recipe, section)
        lines.extend(["", f"# {SECTION_NOTES[section]}", f"[{prefix}{section}]"])
        for item in dataclasses.fields(spec):
            lines.extend(_field_lines(f"{section}.{item.name}", getattr(spec, item.name)))
    return "\n".join(lines) + "\n"


def write_template(path: Path, *, overwrite: bool = False, recipe: Recipe | None = None) -> Path:
    """Write :func:`render_template` to `path` atomically; refuse to clobber or to guess.

    An existing file is kept unless `overwrite`, a missing directory is not created (a typo
    should not grow a directory tree), and a pyproject.toml is never rewritten: its other tables
    are the user's, so the `[tool.prunectl]` rendering is printed for pasting instead.
    """
    from prunectl.run import atomic_write_text

    if path.name == "pyproject.toml":
        raise TemplateTargetError(
            f"prunectl init does not edit {path}; run `prunectl init - --pyproject` and paste its output into it"
        )
    if not path.parent.is_dir():
        raise TemplateTargetError(f"directory {path.parent} does not exist; create it first or choose another path")
    if path.is_dir():
        raise TemplateTargetError(f"{path} is a directory; name a file, e.g. {path / 'prunectl.toml'}")
    if path.exists() and not overwrite:
        raise TemplateTargetError(f"{path} already exists; pass --overwrite to replace it, or choose another path")
    try:
        atomic_write_text(path, render_template(recipe, config_path=str(path)))
    except OSError as error:
        raise TemplateTargetError(f"cannot write {path} ({error.strerror or error}); choose a writable path") from None
    return path
