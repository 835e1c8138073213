"""Pruning benchmark: Fashion-MNIST, builtin CNN, target sparsity 0.5 / 0.8 / 0.9 / 0.95.

Trains one base model through the product (`prunectl.api.prune`), then prunes that same base
checkpoint to each target, and records holdout accuracy of base vs pruned, the wall time of
every round, and the size of each trained pruned model exported with `prunectl.api.export`.
Results go to `benchmarks/results/prune.json` and the `prune` section of BENCHMARKS.md.

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

from prunectl.api import export, prune  # noqa: E402
from prunectl.config import resolve  # noqa: E402

ROOT = Path(__file__).resolve().parent
SPARSITIES = (0.5, 0.8, 0.9, 0.95)
RESULTS = ROOT / "results" / "prune.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_meta(**extra: object) -> dict[str, object]:
    """Date, machine, versions and the command line of this benchmark run, plus `extra`."""
    return {
        "date": dt.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "command": f".venv/bin/python benchmarks/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:]),
        **extra,
    }


# The recipe defaults the recorded results of prune.py, gate.py and defenses.py were measured
# with. Issue #6 changed them (cubic schedule, dense classifier, wemem rmr at threshold 0.25),
# issue #15 the base weight decay (0 → 0.01);
# reruns pin the old ones so they stay comparable with the tables in BENCHMARKS.md.
RECORDED_DEFAULTS: dict[str, object] = {
    "prune.schedule": "geometric",
    "prune.keep_last_dense": False,
    "defense.name": "none",
    "defense.wemem_variant": "swmr",
    "defense.rmr_threshold": 0.5,
    "train.weight_decay": 0.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="base-training epochs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs-per-round", type=int, default=2)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "prune")
    parser.add_argument("--render-only", action="store_true", help="rewrite BENCHMARKS.md from the last results")
    args = parser.parse_args()
    if args.render_only:
        saved = json.loads(RESULTS.read_text())
        update_section("prune", render(saved["meta"], saved["rows"]))
        return

    base_recipe = resolve(
        env={},
        flags={
            **RECORDED_DEFAULTS,
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
        sizes = export(result.run_dir).report["sizes"]
        round_seconds = [r["seconds"] for r in result.rounds]
        rows.append(
            {
                "target_sparsity": sparsity,
                "achieved_sparsity": result.sparsity["global_sparsity"],
                "base_accuracy": result.base_accuracy,
                "pruned_accuracy": result.pruned_accuracy,
                "round_seconds": round_seconds,
                "total_seconds": total,
                "onnx_to_dense": sizes["onnx_to_dense"],
                "xz_to_dense": sizes["xz_to_dense"],
                "xz_bytes": sizes["xz_bytes"],
                "dense_onnx_bytes": sizes["dense_onnx_bytes"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    meta = run_meta(
        split_sizes=result.split_sizes,
        base_epochs=args.epochs,
        base_lr=base_recipe.train.lr,
        base_seconds=base_seconds,
        rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    update_section("prune", render(meta, rows))


def render(meta: dict, rows: list[dict]) -> str:
    fine_tune_epochs = meta["rounds"] * meta["epochs_per_round"]
    lines = [
        "## Pruning: Fashion-MNIST, builtin CNN",
        "",
        f"- Date: {meta['date']}; machine: {meta['machine']}; torch {meta['versions']['torch']}",
        f"- Command: `{meta['command']}`",
        f"- Splits (members/dev/holdout/shadow pool): {'/'.join(str(v) for v in meta['split_sizes'].values())}; "
        f"base model: {meta['base_epochs']} epochs of Adam (lr {meta['base_lr']}, batch 128) in {meta['base_seconds']:.0f} s, "
        f"shared by all four targets; pruning: {meta['rounds']} rounds × {meta['epochs_per_round']} epochs, geometric "
        "schedule, global magnitude scope, dev-split model selection per round.",
        "- Accuracy is on the holdout split (never trained on). Sparsity is measured from the saved weights "
        "over the conv and linear weights. The size columns come from `prunectl export` of each *trained* pruned "
        "model (ratio to the dense fp32 ONNX of the same weights; `.xz` is the distribution artifact).",
        f"- Read Δ acc with care: the pruned model gets {fine_tune_epochs} fine-tuning epochs on top of the base "
        f"model's {meta['base_epochs']}, so a small gain says the base was not trained to convergence, not that "
        "pruning improves the model.",
        "",
        "| target | achieved | base acc | pruned acc | Δ acc | s per round (mean; min–max) | pruning s | sparse ONNX / dense | .xz / dense |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        seconds = row["round_seconds"]
        lines.append(
            f"| {row['target_sparsity']:.2f} | {row['achieved_sparsity']:.4f} | {row['base_accuracy']:.2%} | "
            f"{row['pruned_accuracy']:.2%} | {(row['pruned_accuracy'] - row['base_accuracy']) * 100:+.2f} pts | "
            f"{sum(seconds) / len(seconds):.1f}; {min(seconds):.1f}–{max(seconds):.1f} | {sum(seconds):.0f} | "
            f"{row['onnx_to_dense']:.3f}× | {row['xz_to_dense']:.3f}× |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
