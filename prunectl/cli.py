"""The `prunectl` command line: thin wrappers over `prunectl.api`.

Each command lives in its own module under `prunectl.commands`; heavy imports (torch,
onnxruntime) happen inside the commands so that `prunectl --help` is instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from prunectl.commands.bench import bench
from prunectl.commands.compress import compress
from prunectl.commands.export import export
from prunectl.commands.gate import gate
from prunectl.commands.init import init
from prunectl.commands.memscore import memscore
from prunectl.commands.prune import prune

app = typer.Typer(
    name="prunectl",
    help="Prune a classifier, gate its release on a membership-inference audit, ship sparse ONNX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from prunectl import __version__

        typer.echo(f"prunectl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Prune a classifier, gate its release on a membership-inference audit, ship sparse ONNX."""


# In the order a user meets them: the release step, its config file, then each stage on its own.
app.command("compress")(compress)
app.command("init")(init)
app.command("prune")(prune)
app.command("gate")(gate)
app.command("memscore")(memscore)
app.command("export")(export)
app.command("bench")(bench)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
