"""The commented recipe file that `prunectl init` writes.

Values come from a :class:`~prunectl.recipe.Recipe` (the defaults unless one is given) and are
written with the same formatting as :func:`prunectl.config.to_toml`; every comment is a
declaration's help text (`gates.settings.setting`): the section's `note`, each field's `help`
with its current choices, and the example shown for a setting that is unset. So the template
cannot drift from the recipe, and a defense or attack registered by a plugin appears in it
with its settings.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from prunectl.config import toml_value
from prunectl.errors import PrunectlError
from prunectl.recipe import SECTIONS, Recipe, RecipeField, fields

PYPROJECT_TABLE = "tool.prunectl"


class TemplateTargetError(PrunectlError):
    """The recipe file cannot be written where asked (exists, no such directory, pyproject.toml)."""


# Trailing comments start at this column; a longer `key = value` line gets its comment on the line above.
_COMMENT_COLUMN = 32


def section_note(section: str) -> str:
    """The one-line comment above a section's table."""
    return str(SECTIONS[section].note)


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


def _field_lines(item: RecipeField, value: Any) -> list[str]:
    """`key = value  # note`, commented out when the value is unset; a long line gets its note above."""
    declaration = item.declaration
    shown = value if value is not None else declaration.example
    assignment = f"{item.name} = {toml_value(shown)}" if value is not None else f"# {item.name} = {toml_value(shown)}"
    if len(assignment) > _COMMENT_COLUMN - 2:
        return [f"# {declaration.note}", assignment]
    return [f"{assignment.ljust(_COMMENT_COLUMN - 2)}  # {declaration.note}"]


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
    section: str | None = None
    for item in fields():
        if item.section != section:
            section = item.section
            lines.extend(["", f"# {section_note(str(section))}", f"[{prefix}{section}]"])
        lines.extend(_field_lines(item, item.get(recipe)))
    return "\n".join(lines) + "\n"


def write_template(path: Path, *, overwrite: bool = False, recipe: Recipe | None = None) -> Path:
    """Write :func:`render_template` to `path` atomically; refuse to clobber or to guess.

    An existing file is kept unless `overwrite`, a missing directory is not created (a typo
    should not grow a directory tree), and a pyproject.toml is never rewritten: its other tables
    are the user's, so the `[tool.prunectl]` rendering is printed for pasting instead.
    """
    from prunectl.files import atomic_write_text

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
