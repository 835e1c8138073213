"""`prunectl init`: write a commented recipe file to start from, generated from the Recipe defaults."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from prunectl.commands._common import err_console, handle_errors

STDOUT = "-"


@handle_errors()
def init(
    path: Annotated[
        Path, typer.Argument(help="Recipe file to write, or - to print it on stdout (e.g. for pasting into pyproject.toml).")
    ] = Path("prunectl.toml"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace PATH if it exists.")] = False,
    pyproject: Annotated[
        bool, typer.Option("--pyproject", help="Render \\[tool.prunectl] tables for pasting into pyproject.toml; only with - as PATH.")
    ] = False,
) -> None:
    """Write a recipe file with every field at its default and a comment saying what it does.

    Edit it, then run `prunectl compress --config prunectl.toml`. A pyproject.toml is never
    edited: `prunectl init - --pyproject` prints the `\\[tool.prunectl]` tables to paste into it.
    """
    # Imported here: the recipe pulls in torch, and `prunectl --help` must stay instant.
    from prunectl.template import TemplateTargetError, render_template, write_template

    if str(path) == STDOUT:
        typer.echo(render_template(pyproject=pyproject), nl=False)
        return
    if pyproject:
        raise TemplateTargetError(
            f"--pyproject prints tables for pasting, it does not write {path}; run `prunectl init - --pyproject`"
        )
    written = write_template(path, overwrite=overwrite)
    shown = escape(str(written))
    err_console.print(f"wrote {shown}; edit it, then run: prunectl compress --config {escape(shlex.quote(str(written)))}", soft_wrap=True)
