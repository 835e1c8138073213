"""`prunectl bench`: onnxruntime CPU latency, throughput, memory and size of an ONNX model.

A thin wrapper over :func:`exporters.benchmark`. The result is always written as JSON:
to `--out`, or by default to `bench.json` beside the model — for a run's
`runs/<name>/export/model.onnx` that is `runs/<name>/export/bench.json`, where the run
directory keeps it. A table goes to stderr; with `--json` the same JSON also goes to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prunectl.commands._common import err_console, handle_errors, print_json


@handle_errors()
def bench(
    model: Annotated[Path, typer.Argument(help="The .onnx model to benchmark, e.g. runs/NAME/export/model.onnx.")],
    against: Annotated[Optional[Path], typer.Option(help="A baseline .onnx (e.g. the dense model), run interleaved with MODEL.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime intra-op threads (1: an edge device).")] = 1,
    batch: Annotated[int, typer.Option(min=1, help="Samples per inference call.")] = 1,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per model.")] = 200,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed warm-up runs per model.")] = 20,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="Measure peak RSS in a fresh process per model.")] = True,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the JSON result (default: bench.json beside MODEL).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Also print the result as JSON on stdout.")] = False,
) -> None:
    """Benchmark an ONNX model with onnxruntime's CPU provider, optionally against a dense baseline."""
    from exporters import benchmark, default_result_path, write_result

    result = benchmark(
        model, against=against, threads=threads, batch=batch, runs=runs, warmup=warmup, measure_memory=memory
    )
    path = write_result(result, out if out is not None else default_result_path(model))
    _print_table(result)
    err_console.print(f"wrote {path}")
    if json_output:
        print_json(result.to_dict())


def _print_table(result: Any) -> None:
    from rich.table import Table

    models = [("model", result.candidate)] + ([("against", result.baseline)] if result.baseline else [])
    table = Table(
        title=f"onnxruntime {result.onnxruntime_version} {result.provider}, {result.threads} thread(s), "
        f"batch {result.batch}, {result.runs} runs",
        title_justify="left",
    )
    table.add_column("")
    for label, _ in models:
        table.add_column(label, justify="right")
    if result.ratios:
        table.add_column("ratio", justify="right")

    def mib(value: int | None) -> str:
        return "-" if value is None else f"{value / 2**20:.2f} MiB"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}x"

    r = result.ratios
    rows = [
        ("p50 latency", [f"{m.latency.p50_ms:.3f} ms" for _, m in models], r and r.p50_latency),
        ("p90 latency", [f"{m.latency.p90_ms:.3f} ms" for _, m in models], r and r.p90_latency),
        ("p99 latency", [f"{m.latency.p99_ms:.3f} ms" for _, m in models], r and r.p99_latency),
        ("throughput", [f"{m.latency.throughput_per_s:.1f}/s" for _, m in models], r and r.throughput),
        ("file", [mib(m.file_bytes) for _, m in models], r and r.file_bytes),
        ("file.xz", [mib(m.xz_bytes) for _, m in models], r and r.xz_bytes),
        ("peak RSS", [mib(m.memory.peak_rss_bytes if m.memory else None) for _, m in models], r and r.peak_rss),
    ]
    for name, cells, value in rows:
        table.add_row(name, *cells, *([ratio(value)] if r else []))
    err_console.print(table)
