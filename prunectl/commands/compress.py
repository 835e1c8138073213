"""`prunectl compress`: prune, gate, and export only what passed — the release step a CI job runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.commands import _options as opt
from prunectl.commands._common import EXIT_GATE_FAILED, err_console, handle_errors, print_json


def _resume_hint(**kwargs: Any) -> str:
    change = "--resume in place of --overwrite" if kwargs.get("overwrite") else "--resume added"
    return f"the same prunectl compress command with {change} (finished rounds are kept)"


@handle_errors(resume_hint=_resume_hint)
def compress(
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
    max_advantage: opt.MaxAdvantage = None,
    strict: opt.Strict = None,
    shadows: opt.Shadows = None,
    attacks: opt.Attacks = None,
    eval_size: opt.EvalSize = None,
    quantize: opt.Quantize = None,
    optimize: opt.Optimize = None,
    export_on_fail: Annotated[
        bool,
        typer.Option(
            "--export-on-fail", help="When the gate fails, still export into export/quarantine/ (marked not for release).", rich_help_panel=opt.GATE
        ),
    ] = False,
    config: opt.Config = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: runs/<recipe name>).", rich_help_panel=opt.RUN)] = None,
    name: opt.Name = None,
    seed: opt.Seed = None,
    device: opt.Device = None,
    cache_dir: opt.CacheDir = None,
    workers: opt.Workers = None,
    executor: opt.ExecutorName = None,
    ray_address: opt.RayAddress = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run in --out: finish its pruning, or re-gate a finished one.", rich_help_panel=opt.RUN),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in --out.", rich_help_panel=opt.RUN)] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the RunResult as JSON on stdout.", rich_help_panel=opt.RUN)] = False,
) -> None:
    """Prune, audit for membership leakage, and export sparse ONNX only if the audit passed.

    Exit codes: 0 the gate passed and export/model.onnx was written; 1 the gate failed, or could
    not establish that leakage is below --max-advantage (no release artifact); 2 bad input;
    3 internal error; 130 interrupted (rerun with --resume).
    """
    from prunectl.errors import RunDirError
    from prunectl.progress import RichProgress

    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other; pass one")
    resolved = opt.resolve_from_cli(config, opt.recipe_flags(locals()))  # refuses a bad value before torch is imported
    execution = opt.execution_from_cli(executor, workers, ray_address)
    from prunectl import api

    with RichProgress() as progress:
        result = api.compress(
            resolved.recipe,
            out=out,
            overwrite=overwrite,
            resume=resume,
            export_on_fail=export_on_fail,
            progress=progress,
            origins=resolved.origins,
            config_file=resolved.config_file,
            cache_dir=cache_dir,
            execution=execution,
        )
    print_summary(result)
    if json_output:
        print_json(result.to_dict())
    if not result.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


def print_summary(result: Any) -> None:
    """What a person needs in ten seconds; gate/summary.md and manifest.json hold the rest."""
    from rich.markup import escape
    from rich.table import Table

    from gates.result import VERDICT_LABELS

    gate = result.gate
    colour = "green" if gate.passed else "red"
    verdict = VERDICT_LABELS[gate.verdict]
    table = Table(title=f"prunectl compress → {escape(result.run_dir)}", title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("accuracy", f"{result.base_accuracy:.2%} → {result.pruned_accuracy:.2%} (holdout, never trained on)")
    table.add_row(
        "sparsity",
        f"{result.sparsity:.2%} of the {_denominator(result.recipe)} (target {result.target_sparsity:.0%}); defense: {escape(result.defense)}",
    )
    table.add_row("privacy", f"[bold {colour}]gate {verdict}[/]: {escape(_gate_line(gate))}")
    if result.artifact is not None and result.latency is not None:
        artifact, latency = result.artifact, result.latency
        if latency.file_ratio:
            dense_bytes = artifact.onnx_bytes / latency.file_ratio
            table.add_row(
                "size",
                f"ONNX {latency.file_ratio:.2f}× the dense model ({artifact.onnx_bytes:,} B), "
                f".xz {artifact.xz_bytes / dense_bytes:.2f}× ({artifact.xz_bytes:,} B)",
            )
        table.add_row(
            "latency",
            f"{latency.latency_ratio:.2f}× the dense model (p50 {latency.p50_ms:.3f} vs {latency.dense_p50_ms:.3f} ms, "
            f"onnxruntime CPU, {latency.threads} thread, batch {latency.batch})",
        )
        if artifact.int8_to_fp32 is not None:
            slower = artifact.int8_to_fp32 > 1
            table.add_row(
                "int8",
                (f"holdout accuracy {artifact.int8_accuracy:.2%}; " if artifact.int8_accuracy is not None else "")
                + f"{'[bold yellow]' if slower else ''}latency {artifact.int8_to_fp32:.2f}× the fp32 model on this host"
                + (" (SLOWER: keep export.quantize = none for speed here)[/]" if slower else ""),
            )
        if latency.peak_rss_ratio is not None:
            table.add_row("memory", f"peak RSS {latency.peak_rss_ratio:.2f}× the dense model's (a fresh process holding the session)")
        if result.recipe["prune"]["structure"] == "unstructured":
            table.add_row(
                "note",
                "unstructured sparsity is a size format in onnxruntime (zeros are stored sparse, then run dense): "
                "--structure channel removes whole channels and makes the model faster",
            )
    table.add_row("artifact", escape(_artifact_line(result)))
    table.add_row("time", escape(", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result.seconds.items())))
    table.add_row("settings", escape(settings_line(result.origins, result.recipe, result.config_file)))
    err_console.print(table)


def _denominator(recipe: dict[str, Any]) -> str:
    if recipe["prune"]["structure"] == "channel":
        return "conv/linear weights removed with their channels"
    return "pruned layers' weights"


def _gate_line(gate: Any) -> str:
    if gate.advantage is None:
        return gate.reason
    low, high = gate.advantage_interval
    original = f"; original model {gate.original_advantage:+.3f}" if gate.original_advantage is not None else ""
    bound = "upper 95% bound" if gate.strict else "advantage"
    relation = "≤" if gate.passed else ">"
    gated = high if gate.strict else gate.advantage
    line = f"{bound} {gated:+.3f} ({gate.deciding_attack}) {relation} {gate.max_advantage:g}"
    if gate.strict:
        line += f"; advantage {gate.advantage:+.3f}"
    line += f" [95% CI {low:+.3f}, {high:+.3f}], resolution ±{gate.resolution:.3f}{original}"
    if abs(gated - gate.max_advantage) < gate.resolution:
        line += "; borderline: closer to the threshold than the resolution, so another seed or more data may decide otherwise"
    return line


def _artifact_line(result: Any) -> str:
    artifact, gate = result.artifact, result.gate
    if artifact is None:
        return f"none: the gate did not pass; evidence in {gate.report_dir}/summary.md (--export-on-fail exports into export/quarantine/)"
    if artifact.quarantined:
        return f"{artifact.path}: QUARANTINED, not for release (the gate did not pass)"
    return f"{artifact.path} (ship {Path(artifact.xz_path).name}; sha256 {artifact.sha256[:12]}…)"


def settings_line(origins: dict[str, str], recipe: dict[str, Any], config_file: str | None) -> str:
    """Where the values that matter came from: every flag and environment variable, and the
    file's values that differ from the defaults (a `prunectl init` file repeats them all)."""
    from prunectl.recipe import Recipe

    defaults = Recipe().to_dict()
    groups: dict[str, list[str]] = {}
    for dotted, origin in origins.items():
        value = _lookup(recipe, dotted)
        if origin != "file" or value != _lookup(defaults, dotted):
            groups.setdefault(origin, []).append(f"{dotted}={value}")
    labels = {"flag": "flags", "env": "environment", "file": f"file {config_file}" if config_file else "file"}
    parts = [f"{labels[origin]}: {', '.join(groups[origin])}" for origin in labels if origin in groups]
    return "; ".join(parts + ["everything else at its default"]) if parts else "all defaults"


def _lookup(recipe: dict[str, Any], dotted: str) -> Any:
    value: Any = recipe
    for part in dotted.split("."):
        value = value[part]
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
