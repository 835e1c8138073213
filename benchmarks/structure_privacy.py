"""Accuracy and leakage of channel against unstructured pruning at 90%, through the product.

The builtin CNN on Fashion-MNIST (4k members, the default 4:1:4:12 split, 10 base epochs,
5 rounds × 2 fine-tuning epochs, no defense so that only the structure differs), pruned to
0.9 once with `prune.structure = "unstructured"` and once with `"channel"`, each gated by
`prunectl.api.gate` with the recipe's default gate (4 shadows re-running the same structured
recipe, every default attack). Both runs share their base model and their shadows' base models
through the content cache, so the second costs less than the first.

It records holdout accuracy, the gate's figures, the conv/linear weights each model keeps (the
parameter count the comparison is at) and the wall time of each step. Results go to
`benchmarks/results/structure_privacy.json` and the `structure-privacy` section of
BENCHMARKS.md; a finished structure is skipped on a rerun (`--force` redoes it).

    .venv/bin/python benchmarks/structure_privacy.py        # ~30 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402
from gate import LogProgress  # noqa: E402
from prune import run_meta  # noqa: E402
from prunectl.api import gate, load_run, prune  # noqa: E402
from prunectl.config import resolve  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "structure_privacy.json"
WORKLOAD: dict[str, Any] = {
    "data.source": "fashion-mnist",
    "data.members": 4000,
    "data.dev": 1000,
    "data.holdout": 4000,
    "data.shadow_pool": 12000,
    "model.source": "builtin:cnn",
    "train.epochs": 10,
    "train.batch_size": 128,
    "prune.rounds": 5,
    "prune.epochs_per_round": 2,
    "prune.target_sparsity": 0.9,
    "defense.name": "none",
}
STRUCTURES = ("unstructured", "channel")


def kept_weights(run_dir: Path) -> dict[str, int]:
    """Conv/linear weights the shipped model holds: nonzero ones (unstructured) or all (channel)."""
    loaded = load_run(run_dir)
    names = [n for n, m in loaded.pruned_model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    parameters = dict(loaded.pruned_model.named_parameters())
    weights = [parameters[f"{n}.weight"] for n in names]
    dense = dict(loaded.base_model.named_parameters())
    return {
        "dense": sum(dense[f"{n}.weight"].numel() for n in names),
        "stored": sum(w.numel() for w in weights),
        "nonzero": sum(int((w != 0).sum()) for w in weights),
    }


def measure(structure: str, work: Path) -> dict[str, Any]:
    recipe = resolve(env={}, flags={**WORKLOAD, "name": f"bench-structure-{structure}", "prune.structure": structure}).recipe
    out = work / structure
    started = time.perf_counter()
    pruned = prune(recipe, out=out, overwrite=True, progress=LogProgress())
    prune_seconds = time.perf_counter() - started
    started = time.perf_counter()
    outcome = gate(out, progress=LogProgress())
    gate_seconds = time.perf_counter() - started
    result = outcome.result.to_dict()
    return {
        "structure": structure,
        "achieved_sparsity": pruned.sparsity["global_sparsity"],
        "denominator": pruned.sparsity["denominator"],
        "weights": kept_weights(out),
        "macs": pruned.structure.get("macs"),
        "accuracy": {"base_holdout": pruned.base_accuracy, "pruned_holdout": pruned.pruned_accuracy, "pruned_members": pruned.pruned_member_accuracy},
        "split_sizes": pruned.split_sizes,
        "prune_seconds": prune_seconds,
        "gate_seconds": gate_seconds,
        "gate": result,
    }


def _attack(row: dict[str, Any], name: str) -> dict[str, Any] | None:
    for attack in (row["gate"].get("pruned") or {}).get("attacks", []):
        if attack.get("attack") == name:
            return attack
    return None


def render(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Channel against unstructured pruning: accuracy and leakage (Fashion-MNIST builtin CNN)",
        "",
        f"Measured {meta['date']} on {meta['machine']}: `{meta['command']}`. Raw figures: `benchmarks/results/structure_privacy.json`.",
        f"Workload: {', '.join(f'{k}={v}' for k, v in WORKLOAD.items())}; everything else at the recipe's defaults (the gate's included).",
        "",
        "| structure | sparsity (its denominator) | conv/linear weights kept | MACs vs dense | holdout acc. base → pruned | verdict | gated advantage (attack) | RMIA adv. | RMIA TPR@1% FPR | prune + gate time |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        gate_result = row["gate"]
        rmia = _attack(row, "rmia") or {}
        rates = {r.get("target_fpr"): r for r in rmia.get("calibrated", [])} if rmia else {}
        tpr = rates.get(0.01, {}).get("tpr")
        gated = gate_result.get("gated_value")
        weights = row["weights"]
        kept = weights["nonzero"]
        macs = row.get("macs") or {}
        lines.append(
            f"| {row['structure']} | {row['achieved_sparsity']:.3f} | {kept:,} of {weights['dense']:,} ({kept / weights['dense']:.3f}) "
            f"| {macs.get('ratio', 1.0) if macs else 1.0:.3f} "
            f"| {row['accuracy']['base_holdout']:.2%} → {row['accuracy']['pruned_holdout']:.2%} | {gate_result['verdict']} "
            f"| {gated:+.3f} ({gate_result.get('deciding_attack')}) | {rmia.get('advantage', float('nan')):+.3f} "
            f"| {tpr if tpr is not None else float('nan'):.3f} | {row['prune_seconds']:.0f} + {row['gate_seconds']:.0f} s |"
            if gated is not None
            else f"| {row['structure']} | {row['achieved_sparsity']:.3f} | {kept:,} | | {row['accuracy']['pruned_holdout']:.2%} | {gate_result['verdict']} | {gate_result.get('reason')} | | | |"
        )
    if len(rows) == 2 and all(r["gate"].get("gated_value") is not None for r in rows):
        by = {r["structure"]: r for r in rows}
        a, b = by["unstructured"], by["channel"]
        difference = b["gate"]["gated_value"] - a["gate"]["gated_value"]
        # Two independent measurements, each resolved to ±r: their difference to about ±r·√2.
        resolution = max(r["gate"].get("resolution") or 0.0 for r in rows) * 2**0.5
        word = "more" if difference > 0 else "less"
        lines += [
            "",
            f"Channel pruning's gated advantage is {difference:+.3f} against unstructured ({word}); "
            f"a difference of two gated figures is resolved to about ±{resolution:.3f} here, so "
            + ("the difference is within it: at this size the two leak alike." if abs(difference) <= resolution else "the difference exceeds it.")
            + f" Note the parameter counts: unstructured keeps {a['weights']['nonzero']:,} nonzero conv/linear weights (its classifier stays dense), "
            f"channel {b['weights']['stored']:,}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", default=",".join(STRUCTURES))
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "structure")
    parser.add_argument("--force", action="store_true", help="redo structures already measured")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"meta": run_meta(), "rows": []}
    if args.render_only:
        update_section("structure-privacy", render(saved["meta"], saved["rows"]))
        return
    meta = run_meta()
    rows = saved["rows"]
    for structure in args.structures.split(","):
        if not args.force and any(r["structure"] == structure for r in rows):
            print(f"{structure}: measured before, skipped (--force redoes it)", flush=True)
            continue
        row = measure(structure, args.work)
        rows = [r for r in rows if r["structure"] != structure] + [row]
        rows.sort(key=lambda r: STRUCTURES.index(r["structure"]))
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        update_section("structure-privacy", render(meta, rows))
        print(f"{structure}: verdict {row['gate']['verdict']}: {row['gate']['reason']}", flush=True)


if __name__ == "__main__":
    main()
