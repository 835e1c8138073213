"""`prunectl gate`: audit a run's pruned model for membership leakage; exit 1 when it leaks too much."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.commands import _options as opt
from prunectl.commands._common import EXIT_GATE_FAILED, err_console, handle_errors, print_json


def _resume_hint(**kwargs: Any) -> str | None:
    run = kwargs.get("run") or kwargs.get("out")
    return f"prunectl gate {run}" if run else None


@handle_errors(resume_hint=_resume_hint)
def gate(
    run: Annotated[Optional[Path], typer.Argument(help="A finished run directory to audit. Without it, the recipe is pruned first.")] = None,
    max_advantage: opt.MaxAdvantage = None,
    strict: opt.Strict = None,
    shadows: opt.Shadows = None,
    attacks: opt.Attacks = None,
    eval_size: opt.EvalSize = None,
    config: opt.Config = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory when pruning first (default: runs/<recipe name>).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in --out with a different recipe.")] = False,
    cache_dir: opt.CacheDir = None,
    workers: opt.Workers = None,
    executor: opt.ExecutorName = None,
    ray_address: opt.RayAddress = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the verdict and every figure as JSON on stdout.")] = False,
) -> None:
    """Audit the pruned model with shadow-trained membership inference attacks; exit 1 when it leaks.

    Exit codes: 0 passed; 1 leakage above --max-advantage, or not established (fail closed);
    2 bad input, including data too small for a meaningful verdict; 3 internal error.
    """
    from prunectl.errors import RunDirError
    from prunectl.progress import RichProgress

    flags = opt.recipe_flags(locals())
    execution = opt.execution_from_cli(executor, workers, ray_address)
    if run is not None:
        if out is not None:
            raise RunDirError(f"RUN ({run}) and --out ({out}) both name a run; pass only RUN to audit an existing run")
        from prunectl import api

        settings = opt.resolve_from_cli(config, flags, api.stored_recipe(run)).recipe.gate
        with RichProgress() as progress:
            outcome = api.gate(run, settings=settings, progress=progress, cache_dir=cache_dir, execution=execution)
    else:
        recipe = opt.resolve_from_cli(config, flags).recipe  # refuses a bad value before torch is imported
        from prunectl import api

        target = out or Path("runs") / recipe.run_name
        api.check_execution(execution)
        with RichProgress() as progress:
            api.prune_or_reuse(recipe, target, reuse=True, overwrite=overwrite, progress=progress, cache_dir=cache_dir)
            outcome = api.gate(target, settings=recipe.gate, progress=progress, cache_dir=cache_dir, execution=execution)
    print_verdict(outcome)
    if json_output:
        print_json(outcome.to_dict())
    if not outcome.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


def print_verdict(outcome: Any) -> None:
    """The table and verdict a person reads in ten seconds (reports hold the rest)."""
    from rich.markup import escape
    from rich.table import Table

    from gates.result import VERDICT_LABELS

    result = outcome.result
    if result.pruned is not None:
        table = Table(title=f"privacy gate → {outcome.gate_dir}", title_justify="left")
        table.add_column("attack")
        table.add_column("original adv", justify="right")
        table.add_column("pruned adv [95% CI]", justify="right")
        table.add_column("pruned AUC", justify="right")
        table.add_column("TPR@1%FPR", justify="right")
        for metrics in result.pruned.attacks:
            original = result.original.metrics(metrics.attack).advantage if result.original else float("nan")
            mark = " ◀" if metrics.attack == result.deciding_attack else ""
            table.add_row(
                metrics.attack + mark,
                f"{original:+.3f}",
                f"{metrics.advantage:+.3f} [{metrics.advantage_low:+.3f}, {metrics.advantage_high:+.3f}]",
                f"{metrics.auc:.3f}",
                f"{metrics.tpr_at_1pct_fpr:.3f} @ {metrics.achieved_fpr_1pct:.3%}",
            )
        err_console.print(table)
        err_console.print(
            f"evaluation: {result.n_members} members vs {result.n_nonmembers} non-members, resolution ±{result.resolution:.3f}; "
            f"holdout accuracy {_accuracy(result.original)} → {_accuracy(result.pruned)}"
        )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    colour = "green" if result.passed else "red"
    label = VERDICT_LABELS[result.verdict]
    err_console.print(f"[bold {colour}]gate {label}[/]: {escape(result.reason)}", soft_wrap=True)
    err_console.print(f"reports: {escape(outcome.gate_dir)}/summary.md, report.json, junit.xml, roc.png", soft_wrap=True)


def _accuracy(audit: Any) -> str:
    return f"{audit.holdout_accuracy:.2%}" if audit is not None else "n/a"
