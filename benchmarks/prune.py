"""Pruning benchmark: Fashion-MNIST, builtin CNN, target sparsity 0.5 / 0.8 / 0.9 / 0.95.

Trains one base model through the product (`prunectl.api.prune`), then prunes that same base
checkpoint to each target, and records holdout accuracy of base vs pruned and the wall time of
every round. Results go to `benchmarks/results/prune.json` and the `prune` section of
BENCHMARKS.md.

    .venv/bin/python benchmarks/prune.py [--epochs 10] [--rounds 5] [--epochs-per-round 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402

from prunectl.api import prune  # noqa: E402
from prunectl.config import resolve  # noqa: E402

ROOT = Path(__file__).resolve().parent
SPARSITIES = (0.5, 0.8, 0.9, 0.95)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="base-training epochs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs-per-round", type=int, default=2)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "prune")
    args = parser.parse_args()

    base_recipe = resolve(
        env={},
        flags={
            "name": "bench-prune",
            "data.source": args.data,
            "model.source": "builtin:cnn",
            "train.epochs": args.epochs,
            "train.batch_size": 128,
            "prune.rounds": args.rounds,
            "prune.epochs_per_round": args.epochs_per_round,
        },
    ).recipe
    rows = []
    base_checkpoint: Path | None = None
    base_seconds = 0.0
    for sparsity in SPARSITIES:
        recipe = dataclasses.replace(base_recipe, prune=dataclasses.replace(base_recipe.prune, target_sparsity=sparsity))
        if base_checkpoint is not None:
            recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, checkpoint=str(base_checkpoint)))
        started = time.perf_counter()
        result = prune(recipe, out=args.work / f"s{sparsity}", overwrite=True)
        total = time.perf_counter() - started
        if base_checkpoint is None:
            base_checkpoint = Path(result.run_dir) / "base.pt"
            base_seconds = result.seconds["base"]
        round_seconds = [r["seconds"] for r in result.rounds]
        rows.append(
            {
                "target_sparsity": sparsity,
                "achieved_sparsity": result.sparsity["global_sparsity"],
                "base_accuracy": result.base_accuracy,
                "pruned_accuracy": result.pruned_accuracy,
                "round_seconds": round_seconds,
                "total_seconds": total,
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "command": "make bench  # = .venv/bin/python benchmarks/prune.py " + " ".join(sys.argv[1:]),
        "split_sizes": result.split_sizes,
        "base_epochs": args.epochs,
        "base_seconds": base_seconds,
        "rounds": args.rounds,
        "epochs_per_round": args.epochs_per_round,
    }
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "prune.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")

    lines = [
        "## Pruning: Fashion-MNIST, builtin CNN",
        "",
        f"- Date: {meta['date']}; machine: {meta['machine']}; torch {torch.__version__}",
        f"- Command: `{meta['command']}`",
        f"- Splits (members/dev/holdout/shadow pool): {'/'.join(str(v) for v in result.split_sizes.values())}; "
        f"base model: {args.epochs} epochs of Adam (lr {base_recipe.train.lr}, batch 128) in {base_seconds:.0f} s, "
        f"shared by all four targets; pruning: {args.rounds} rounds × {args.epochs_per_round} epochs, geometric schedule, "
        "global magnitude scope, dev-split model selection per round.",
        "- Accuracy is on the holdout split (never trained on). Sparsity is measured from the saved weights "
        "over the conv and linear weights.",
        "",
        "| target | achieved | base acc | pruned acc | Δ acc | s per round (mean; min–max) | pruning s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        seconds = row["round_seconds"]
        lines.append(
            f"| {row['target_sparsity']:.2f} | {row['achieved_sparsity']:.4f} | {row['base_accuracy']:.2%} | "
            f"{row['pruned_accuracy']:.2%} | {(row['pruned_accuracy'] - row['base_accuracy']) * 100:+.2f} pts | "
            f"{sum(seconds) / len(seconds):.1f}; {min(seconds):.1f}–{max(seconds):.1f} | {sum(seconds):.0f} |"
        )
    update_section("prune", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
