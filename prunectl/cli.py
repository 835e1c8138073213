"""The `prunectl` command line: thin wrappers over `prunectl.api`.

Each command lives in its own module under `prunectl.commands`; heavy imports (torch,
onnxruntime) happen inside the commands so that `prunectl --help` is instant.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException, NoArgsIsHelpError

from prunectl.commands.bench import bench
from prunectl.commands.compress import compress
from prunectl.commands.export import export
from prunectl.commands.gate import gate
from prunectl.commands.init import init
from prunectl.commands.memscore import memscore
from prunectl.commands.prune import prune
from prunectl.commands.verify import verify


class _OneLineUsageErrors(TyperGroup):
    """Usage errors (an unknown flag, `--rounds abc`, an out-of-range value) in the one-line form
    every other bad input gets: `error: <what>; see '<command> --help'`, exit code 2, instead of
    Typer's multi-line usage panel, so a CI log shows the problem in the line it greps for."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        from prunectl.commands._common import Terminated, sigterm_as_interrupt, stopped
        from prunectl.faults import fault_point

        # A signal can land outside a command too (while parsing, or after the command returned):
        # it still ends in one line and 130/143, never in click's "Aborted!" and exit 1, which a
        # CI job would read as a failed gate.
        try:
            with sigterm_as_interrupt():
                code = super().main(*args, standalone_mode=False, **kwargs)
                fault_point("after-command")
        except KeyboardInterrupt as interrupt:
            sys.exit(stopped(isinstance(interrupt, Terminated)))
        except typer.Abort as abort:
            if isinstance(abort.__cause__, KeyboardInterrupt):
                sys.exit(stopped(isinstance(abort.__cause__, Terminated)))
            sys.exit(1)
        except NoArgsIsHelpError as shown:
            shown.show()
            sys.exit(shown.exit_code)
        except ClickException as error:
            from rich.markup import escape

            from prunectl.commands._common import err_console
            from prunectl.errors import one_line

            where = getattr(getattr(error, "ctx", None), "command_path", None) or "prunectl"
            message = one_line(error.format_message()).rstrip(".")
            err_console.print(f"[red]error:[/] {escape(message)}; see '{escape(where)} --help'", soft_wrap=True)
            sys.exit(error.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineUsageErrors,
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


# In the order a user meets them: the release step and its proof, its config file, then each stage on its own.
app.command("compress")(compress)
app.command("verify")(verify)
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
