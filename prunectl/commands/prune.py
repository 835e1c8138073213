"""`prunectl prune`: train (or load) the base model and prune it iteratively into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.commands import _options as opt
from prunectl.commands._common import err_console, handle_errors, print_json


def _resume_hint(**kwargs: Any) -> str | None:
    out = kwargs.get("resume") or kwargs.get("out")
    return f"prunectl prune --resume {out}" if out else "prunectl prune --resume runs/<name>"


@handle_errors(resume_hint=_resume_hint)
def prune(
    target_sparsity: opt.TargetSparsity = None,
    rounds: opt.Rounds = None,
    epochs_per_round: opt.EpochsPerRound = None,
    schedule: opt.Schedule = None,
    scope: opt.Scope = None,
    structure: opt.Structure = None,
    round_to: opt.RoundTo = None,
    keep_first_dense: opt.KeepFirstDense = None,
    keep_last_dense: opt.KeepLastDense = None,
    data: opt.Data = None,
    model: opt.Model = None,
    model_factory: opt.ModelFactory = None,
    model_checkpoint: opt.ModelCheckpoint = None,
    epochs: opt.Epochs = None,
    defense: opt.Defense = None,
    kl_weight: opt.KlWeight = None,
    wemem_variant: opt.WememVariant = None,
    memscores: opt.Memscores = None,
    cache_dir: opt.CacheDir = None,
    config: opt.Config = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: runs/<recipe name>).", rich_help_panel=opt.RUN)] = None,
    name: opt.Name = None,
    seed: opt.Seed = None,
    device: opt.Device = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the unfinished run in this directory.", rich_help_panel=opt.RUN)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in --out.", rich_help_panel=opt.RUN)] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.", rich_help_panel=opt.RUN)] = False,
) -> None:
    """Prune a model toward a target sparsity with iterative magnitude pruning and fine-tuning."""
    from prunectl.errors import RunDirError
    from prunectl.progress import RichProgress

    flags = opt.recipe_flags(locals())
    if resume is not None and out is not None and out != resume:
        raise RunDirError(f"--out {out} and --resume {resume} name different directories; pass only --resume")
    if resume is not None:
        from prunectl.api import stored_recipe

        resolved = opt.resolve_from_cli(config, flags, stored_recipe(resume))
    else:
        resolved = opt.resolve_from_cli(config, flags)  # refuses a bad value before torch is imported
    from prunectl import api

    with RichProgress() as progress:
        result = api.prune(
            resolved.recipe,
            out=resume or out,
            overwrite=overwrite,
            resume=resume is not None,
            progress=progress,
            origins=resolved.origins,
            cache_dir=cache_dir,
        )
    _print_summary(result)
    if json_output:
        print_json(result.to_dict())


def _print_summary(result: Any) -> None:
    from rich.table import Table

    sparsity = result.sparsity
    channels = (result.structure or {}).get("channels")
    table = Table(title=f"prunectl prune → {result.run_dir}", title_justify="left")
    table.add_column("layer")
    if channels:
        table.add_column("channels kept", justify="right")
    table.add_column("sparsity", justify="right")
    table.add_column("removed / weights" if channels else "zeros / weights", justify="right")
    for layer in sparsity["layers"]:
        kept = channels.get(layer["name"].removesuffix(".weight")) if channels else None
        extra = [f"{kept['kept']} / {kept['dense']}" if kept else ""] if channels else []
        table.add_row(layer["name"], *extra, f"{layer['sparsity']:.1%}", f"{layer['zeros']:,} / {layer['numel']:,}")
    extra = [""] if channels else []
    table.add_row("[bold]global[/]", *extra, f"[bold]{sparsity['global_sparsity']:.2%}[/]", f"{sparsity['zeros']:,} / {sparsity['numel']:,}")
    err_console.print(table)
    seconds = result.seconds
    err_console.print(
        f"holdout accuracy  base {result.base_accuracy:.2%} → pruned {result.pruned_accuracy:.2%}"
        f"   (members: {result.base_member_accuracy:.2%} → {result.pruned_member_accuracy:.2%})"
    )
    err_console.print(
        f"target sparsity {result.recipe['prune']['target_sparsity']:.2%}, achieved {sparsity['global_sparsity']:.2%} "
        f"over {sparsity['denominator']}"
    )
    if channels:
        macs = result.structure["macs"]
        err_console.print(
            f"channel pruning: {result.structure['parameters']['pruned']:,} of {result.structure['parameters']['dense']:,} parameters kept, "
            f"MACs {macs['ratio']:.3f}x the dense model (tolerance ±{result.structure['tolerance']:.4g})"
        )
    from prunectl.defenses import describe_defense

    err_console.print(f"defense {describe_defense(result.defense)}; base model {_base_source(result.base_source)}")
    err_console.print(
        f"time  base {seconds['base']:.1f}s, prune {seconds['prune']:.1f}s, total {sum(seconds.values()):.1f}s"
        + (f"   (resumed after round {result.resumed_from_round})" if result.resumed_from_round else "")
    )


def _base_source(source: str) -> str:
    return "reused from the cache" if source.startswith("cache:") else {"run": "from the run (resumed)", "checkpoint": "from --model-checkpoint"}.get(
        source, "trained"
    )
