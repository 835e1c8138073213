"""How many helper models do memorization scores need? Noise against K, measured from one run.

For each workload it trains 16 helper models (8 complementary pairs) exactly as `prunectl
memscore` does, then compares estimates built from *disjoint* sets of pairs: K = 4 (pairs 0-1
against pairs 2-3) and K = 8 (pairs 0-3 against 4-7). Their Spearman rank correlation is the
reliability of one K-model estimate; K = 16's is extrapolated with the Spearman-Brown formula
2r/(1+r) from K = 8 (labelled as such). Also: wall time per helper model, how many members
reach the default risky threshold (0.5), and how many distinct score values there are.

Workloads: `digits-cnn` (the embedded default: digits, builtin CNN, 30 epochs on 399 members),
`leaky-mlp` and `cnn` (Fashion-MNIST, as in benchmarks/defenses.py). Results go to
`benchmarks/results/memscore_k.json` and the `memscore-k` section of BENCHMARKS.md.

    .venv/bin/python benchmarks/memscore_k.py [--workloads digits-cnn,leaky-mlp,cnn] [--render-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402
from defenses import WORKLOADS as DEFENSE_WORKLOADS  # noqa: E402
from gate import LogProgress  # noqa: E402
from prune import run_meta  # noqa: E402

from prunectl.config import resolve  # noqa: E402
from prunectl.data import load_dataset, make_splits  # noqa: E402
from prunectl.memscores import spearman, train_helpers  # noqa: E402
from prunectl.pipeline import helper_trainers  # noqa: E402
from gates.seeds import derive_seed  # noqa: E402
from prunectl.training import resolve_device  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "memscore_k.json"
SECTION = "memscore-k"
PAIRS = 8
THRESHOLD = 0.5

WORKLOADS: dict[str, dict[str, Any]] = {
    # 30 epochs: the embedded default when the recorded table was measured (it is 15 now).
    "digits-cnn": {"data.source": "digits", "model.source": "builtin:cnn", "train.epochs": 30},
    "leaky-mlp": {"data.source": "fashion-mnist", **DEFENSE_WORKLOADS["leaky-mlp"]},
    "cnn": {"data.source": "fashion-mnist", **DEFENSE_WORKLOADS["cnn"]},
}


def measure(workload: str) -> dict[str, Any]:
    flags = {k: v for k, v in WORKLOADS[workload].items() if not k.startswith("gate.")}
    recipe = resolve(env={}, flags=flags).recipe
    data = load_dataset(recipe.data)
    members = make_splits(data.y, recipe.data, recipe.seed).members
    started = time.perf_counter()
    outcomes = train_helpers(
        data,
        members,
        models=2 * PAIRS,
        seed=derive_seed(recipe.seed, "memscore"),
        **helper_trainers(recipe, data),
        device=resolve_device(recipe.device),
        progress=LogProgress(),
    )
    seconds = time.perf_counter() - started
    by_k: dict[str, Any] = {}
    for k in (4, 8):
        first, second = outcomes.scores(slice(0, k)), outcomes.scores(slice(k, 2 * k))
        by_k[str(k)] = {
            "independent_spearman": spearman(first, second),
            "risky_fraction": float((first >= THRESHOLD).mean()),
            "risky_agreement": _jaccard(first >= THRESHOLD, second >= THRESHOLD),
            "distinct_values": int(len(np.unique(first))),
        }
    r8 = by_k["8"]["independent_spearman"]
    all16 = outcomes.scores()
    by_k["16"] = {
        "independent_spearman_predicted": None if r8 is None else 2 * r8 / (1 + r8),
        "risky_fraction": float((all16 >= THRESHOLD).mean()),
        "distinct_values": int(len(np.unique(all16))),
    }
    return {
        "workload": workload,
        "members": int(len(members)),
        "train_epochs": recipe.train.epochs,
        "helper_models": 2 * PAIRS,
        "seconds": seconds,
        "seconds_per_model": seconds / (2 * PAIRS),
        "by_k": by_k,
    }


def _jaccard(a: np.ndarray, b: np.ndarray) -> float | None:
    union = int((a | b).sum())
    return None if union == 0 else int((a & b).sum()) / union


def render(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Memorization scores: noise against the number of helper models K",
        "",
        f"- Machine: {meta['machine']}; torch {meta['versions']['torch']}; command `{meta['command']}` ({meta['date']}).",
        f"- {2 * PAIRS} helper models per workload ({PAIRS} complementary pairs of halves of the members, the recipe's base "
        "training). *Independent ρ* is the Spearman rank correlation between two estimates from disjoint helper models "
        "(K = 4: 2 pairs vs 2 other pairs; K = 8: 4 vs 4); for K = 16 it is predicted from K = 8 with Spearman-Brown "
        "2ρ/(1+ρ). *Risky* = score ≥ 0.5 (the default `rmr_threshold`); *agreement* = Jaccard overlap of the two "
        "estimates' risky sets.",
        "",
        "| workload | members | s per helper model | K | independent ρ | risky | risky agreement | distinct scores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for k, figures in row["by_k"].items():
            rho = figures.get("independent_spearman", figures.get("independent_spearman_predicted"))
            predicted = " (predicted)" if "independent_spearman_predicted" in figures else ""
            agreement = figures.get("risky_agreement")
            lines.append(
                f"| {row['workload']} | {row['members']} | {row['seconds_per_model']:.1f} | {k} | "
                f"{'n/a' if rho is None else f'{rho:.2f}'}{predicted} | {figures['risky_fraction']:.1%} | "
                f"{'n/a' if agreement is None else f'{agreement:.2f}'} | {figures['distinct_values']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="digits-cnn,leaky-mlp")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"meta": None, "rows": []}
    if args.render_only:
        update_section(SECTION, render(saved["meta"], saved["rows"]))
        return
    meta = run_meta()
    chosen = args.workloads.split(",")
    rows = [row for row in saved["rows"] if row["workload"] not in chosen]
    for workload in chosen:
        print(f"{workload}: {2 * PAIRS} helper models", flush=True)
        rows.append(measure(workload))
        print(json.dumps(rows[-1]), flush=True)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        update_section(SECTION, render(meta, rows))


if __name__ == "__main__":
    main()
