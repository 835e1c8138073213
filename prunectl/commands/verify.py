"""`prunectl verify`: recompute a run's hashes and prove its ONNX is the model that passed the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.commands._common import EXIT_GATE_FAILED, err_console, handle_errors, print_json


@handle_errors()
def verify(
    run: Annotated[Path, typer.Argument(help="A run directory written by prunectl compress (e.g. runs/release-42).")],
    max_advantage: Annotated[
        Optional[float],
        typer.Option(min=0.0, max=1.0, help="Also require that the gate ran at this max_advantage or stricter, and that its figure is within it."),
    ] = None,
    parity: Annotated[
        bool, typer.Option("--parity/--no-parity", help="Also run the ONNX against torch on the audited weights (holdout samples).")
    ] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print every check as JSON on stdout.")] = False,
) -> None:
    """Check that export/model.onnx is, byte for byte, the model that passed the privacy gate.

    Recomputes every SHA-256 the manifest records (checkpoints, reports, exported files), checks
    that the ONNX names the audited checkpoint and model.onnx.xz unpacks to it, and runs it
    against the audited weights. Writes nothing. Exit codes: 0 verified; 1 a check failed (do not
    ship); 2 not a finished run directory.
    """
    from prunectl import api

    result = api.verify(run, parity=parity, max_advantage=max_advantage)
    _print_checks(result)
    if json_output:
        print_json(result.to_dict())
    if not result.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


def _print_checks(result: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"prunectl verify → {escape(result.run_dir)}", title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column()
    table.add_column(style="bold")
    table.add_column()
    for check in result.checks:
        mark = "[green]ok[/]" if check.passed else "[red]FAILED[/]"
        table.add_row(mark, check.name, escape(check.detail))
    err_console.print(table)
    if result.passed:
        err_console.print(f"[green]verified:[/] {escape(str(result.artifact))} (sha256 {result.artifact_sha256}) is the model that passed the gate")
    else:
        names = ", ".join(check.name for check in result.failures)
        err_console.print(f"[red]NOT verified ({escape(names)}):[/] do not ship this run", soft_wrap=True)
