"""CLI start-up: `prunectl --help`, `prunectl init -` and a refused value, against `python -c pass`.

Issue #14's goal: refusing a bad value (`prunectl compress --target-sparsity 1.5`) within 0.5 s
on a 2-core machine, because the recipe no longer imports torch. Each command is a fresh
process, timed from spawn to exit; every round runs each command once, in a new random order,
so the commands share the machine's load alike (interleaved); the table gives medians and their
ratio to the interpreter's own start-up.

With `--baseline DIR` (a checkout of an earlier commit, e.g. `git worktree add /tmp/before
1d7f671`), the same commands also run from that tree's sources (`python -m prunectl.cli` with the
tree first on the path), interleaved with the current ones: a before/after comparison on one
machine at one time.

    .venv/bin/python benchmarks/startup.py [--rounds 15] [--baseline DIR] [--render-only]

Results go to `benchmarks/results/startup.json` and the `startup` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402
from prune import run_meta  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "startup.json"
SECTION = "startup"
PYTHON = sys.executable
GOAL_SECONDS = 0.5

COMMANDS = {
    "--help": ["--help"],
    "init -": ["init", "-"],
    "refuse --target-sparsity 1.5": ["compress", "--target-sparsity", "1.5"],
}


def _time(argv: list[str], cwd: Path) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNECTL_")}
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, done.returncode


def measure(rounds: int, baseline: Path | None) -> dict[str, Any]:
    cells: dict[str, tuple[list[str], Path]] = {"python -c pass": ([PYTHON, "-c", "pass"], ROOT)}
    console = str(Path(PYTHON).parent / "prunectl")
    for name, args in COMMANDS.items():
        cells[f"prunectl {name}"] = ([console, *args], ROOT)
        if baseline is not None:
            cells[f"before: prunectl {name}"] = ([PYTHON, "-m", "prunectl.cli", *args], baseline)
    times: dict[str, list[float]] = {name: [] for name in cells}
    codes: dict[str, set[int]] = {name: set() for name in cells}
    rng = random.Random(0)
    for name, (argv, cwd) in cells.items():  # warm the page cache once, untimed
        _time(argv, cwd)
    for _ in range(rounds):
        order = list(cells)
        rng.shuffle(order)
        for name in order:
            seconds, code = _time(*cells[name])
            times[name].append(seconds)
            codes[name].add(code)
    floor = statistics.median(times["python -c pass"])
    return {
        **run_meta(
            rounds=rounds,
            baseline=str(baseline) if baseline else None,
            goal_seconds=GOAL_SECONDS,
            typer=version("typer"),
            bytecode="not cached (PYTHONDONTWRITEBYTECODE is set)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "cached",
        ),
        "cells": {
            name: {
                "median_s": statistics.median(samples),
                "min_s": min(samples),
                "max_s": max(samples),
                "ratio_to_python": statistics.median(samples) / floor,
                "exit_codes": sorted(codes[name]),
                "samples_s": samples,
            }
            for name, samples in times.items()
        },
    }


def render(results: dict[str, Any]) -> str:
    cells = results["cells"]
    lines = [
        "## CLI start-up: help, init and a refused value, against `python -c pass`",
        "",
        f"`{results['command']}` — {results['date']}. Machine: {results['machine']}; typer {results['typer']}; "
        f"bytecode {results['bytecode']}. "
        f"{results['rounds']} rounds, each command once per round in a random order (interleaved); medians.",
        "",
        "| command | median s | min–max s | × `python -c pass` | exit |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, cell in cells.items():
        lines.append(
            f"| `{name}` | {cell['median_s']:.3f} | {cell['min_s']:.3f}–{cell['max_s']:.3f} | {cell['ratio_to_python']:.1f} | "
            f"{','.join(map(str, cell['exit_codes']))} |"
        )
    refusal = cells["prunectl refuse --target-sparsity 1.5"]["median_s"]
    verdict = "met" if refusal <= results["goal_seconds"] else "missed"
    lines += ["", f"Goal: a refusal within {results['goal_seconds']} s: {verdict} ({refusal:.3f} s median)."]
    before = cells.get("before: prunectl refuse --target-sparsity 1.5")
    if before:
        lines.append(
            f"Before the layered core (`{results['baseline']}`, from source), the same refusal took {before['median_s']:.3f} s: "
            f"{before['median_s'] / refusal:.1f}× longer, because loading the recipe imported torch."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit to compare with")
    parser.add_argument("--render-only", action="store_true", help="rewrite BENCHMARKS.md from the last results")
    args = parser.parse_args()
    if args.render_only:
        results = json.loads(RESULTS.read_text())
    else:
        results = measure(args.rounds, args.baseline)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    update_section(SECTION, render(results), ROOT / "BENCHMARKS.md")
    print(render(results))


if __name__ == "__main__":
    main()
