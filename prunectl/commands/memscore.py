"""`prunectl memscore`: memorization scores of a recipe's members, cached for every later run and shadow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.commands import _options as opt
from prunectl.commands._common import err_console, handle_errors, print_json


@handle_errors()
def memscore(
    data: Annotated[Optional[str], typer.Option(help="digits | fashion-mnist[:DIR] | imagefolder:DIR | npz:FILE | csv:FILE")] = None,
    model: Annotated[Optional[str], typer.Option(help="builtin:cnn | builtin:mlp | torchvision:ARCH | torchscript:FILE | state-dict:FILE")] = None,
    model_factory: Annotated[Optional[str], typer.Option(help="module:function building the architecture for state-dict:FILE.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs of each helper model (the recipe's base training).")] = None,
    models: Annotated[Optional[int], typer.Option(help="Helper models, an even number >= 4 (complementary halves of the members).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the splits and the helper models.")] = None,
    config: opt.Config = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Shared cache directory (default: user cache); runs and shadows read it.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write the scores as CSV (index,score), the format --memscores reads.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Estimate the members' memorization scores (Feldman & Zhang) that `--defense wemem` uses.

    Trains `--models` copies of the recipe's model on complementary halves of the members split;
    score = accuracy on a sample when it was in the half minus when it was not. The result is
    cached by content, so `prunectl prune --defense wemem` and the gate's shadows reuse it.
    """
    from prunectl.progress import RichProgress

    flags = {
        "data.source": data,
        "model.source": model,
        "model.factory": model_factory,
        "train.epochs": epochs,
        "defense.memscore_models": models,
        "seed": seed,
    }
    recipe = opt.resolve_from_cli(config, flags).recipe  # refuses a bad value before torch is imported
    from prunectl import api

    with RichProgress() as progress:
        result = api.memscore(recipe, cache_dir=cache_dir, out=out, progress=progress)
    _print_summary(result)
    if json_output:
        print_json(result.to_dict())


def _print_summary(result: Any) -> None:
    from rich.markup import escape

    summary = result.summary
    where = "read from the cache" if result.cached else f"computed in {result.seconds:.1f} s"
    err_console.print(f"memorization scores of {result.members} members from {result.models} helper models, {where}")
    err_console.print(
        f"scores: mean {summary['mean']:.3f}, 10% / 50% / 90% quantiles {summary['p10']:.3f} / {summary['median']:.3f} / {summary['p90']:.3f}; "
        f"{summary['at_or_above_threshold']} members at or above the risky threshold {summary['threshold']:g}"
    )
    if result.split_half_spearman is not None:
        err_console.print(
            f"noise: split-half rank correlation {result.split_half_spearman:.2f} (the scores of one half of the helper models against "
            "the other's; 1 = stable ranking; raise --models when it is low)"
        )
    if result.cache_entry:
        err_console.print(f"cache entry: {escape(result.cache_entry['path'])}", soft_wrap=True)
    if result.csv_path:
        err_console.print(f"CSV: {escape(result.csv_path)}", soft_wrap=True)
