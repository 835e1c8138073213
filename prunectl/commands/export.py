"""`prunectl export`: the pruned model of a finished run as a checked, sparse ONNX artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.commands import _options as opt
from prunectl.commands._common import err_console, handle_errors, print_json

ARTIFACT = "Artifact (default: the run's recipe)"


@handle_errors()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory (the --out of prunectl prune).")],
    format: opt.recipe_option("format", "export.format", "--format", panel=ARTIFACT) = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the files (default: RUN_DIR/export).")] = None,
    opset: opt.recipe_option("opset", "export.opset", panel=ARTIFACT) = None,
    sparse: opt.recipe_option("sparse", "export.sparse", panel=ARTIFACT) = None,
    quantize: opt.recipe_option("quantize", "export.quantize", panel=ARTIFACT) = None,
    optimize: opt.recipe_option("optimize", "export.optimize", panel=ARTIFACT) = None,
    tolerance: opt.recipe_option("tolerance", "export.tolerance", panel=ARTIFACT) = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the export report as JSON on stdout.")] = False,
) -> None:
    """Export the pruned model to ONNX, check parity with torch on the holdout split, compress it."""
    from prunectl import api
    from prunectl.progress import RichProgress

    settings = api.resolve_recipe(flags=opt.recipe_flags(locals()), base=api.stored_recipe(run_dir)).recipe.export

    with RichProgress() as progress:
        result = api.export(run_dir, out=out, settings=settings, progress=progress)
    _print_summary(result)
    if json_output:
        print_json(result.to_dict())


def _print_summary(result: Any) -> None:
    report = result.report
    sizes, parity = report["sizes"], report["parity"]
    err_console.print(f"wrote {report['onnx_path']} and {report['xz_path']}", soft_wrap=True)
    if sizes["sparse_tensors"]:
        err_console.print(
            f"size: dense ONNX {sizes['dense_onnx_bytes']:,} B → sparse ONNX {sizes['onnx_bytes']:,} B "
            f"({sizes['onnx_to_dense']:.2f}×) → .xz {sizes['xz_bytes']:,} B ({sizes['xz_to_dense']:.3f}×; "
            f"reference size {sizes['reference_to_dense']:.3f}×)",
            soft_wrap=True,
        )
    else:
        err_console.print(
            f"size: ONNX {sizes['onnx_bytes']:,} B, no tensor sparse enough to store sparse → .xz {sizes['xz_bytes']:,} B; "
            "compare with the dense baseline: prunectl bench MODEL --against BASELINE",
            soft_wrap=True,
        )
    err_console.print(
        f"parity with torch on {parity['samples']} inputs: max |Δlogit| {parity['max_abs_diff']:.2e} "
        f"(tolerance {parity['tolerance']:.0e}), argmax agreement {parity['argmax_agreement']:.2%}",
        soft_wrap=True,
    )
    if report.get("accuracy"):
        acc = report["accuracy"]
        err_console.print(f"holdout accuracy: torch {acc['torch']:.2%}, onnxruntime {acc['onnx']:.2%}")
    for line in int8_lines(report):
        err_console.print(line, soft_wrap=True)
    err_console.print(f"dense baseline for `prunectl bench --against`: {result.baseline_onnx}", soft_wrap=True)


def int8_lines(report: dict[str, Any]) -> list[str]:
    """What the INT8 model is and how fast it is on this host; a loud warning when slower than fp32."""
    quant = report.get("quantization")
    if not quant:
        return []
    accuracy = (
        f"; holdout accuracy fp32 {quant['accuracy_fp32']:.2%} → int8 {quant['accuracy_int8']:.2%}" if quant.get("accuracy_int8") is not None else ""
    )
    lines = [f"int8: {report['int8_path']} {quant['onnx_bytes']:,} B, {quant['reason']}{accuracy}"]
    latency = report.get("int8_latency")
    if latency:
        lines.append(
            f"int8 latency {latency['int8_to_fp32']:.2f}× the fp32 model (p50, batch {latency['batch']}, {latency['threads']} thread, "
            "each under the session options it ships with; report only, never a decision)"
        )
        if latency["int8_slower_than_fp32"]:
            lines.append(
                "[bold yellow]warning:[/] on this host the INT8 model is SLOWER than the fp32 one: "
                "small models spend their time in quantize/dequantize steps; keep export.quantize = none for speed here"
            )
    return lines
