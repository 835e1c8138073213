"""Does pruning the classifier layer make the pruned accuracy swing between seeds? (the embedded default)

Prunes the default recipe (digits, builtin CNN, 90%, no defense) at several seeds twice: with
the last layer kept dense (the default since issue #6) and with it pruned (`--prune-last`),
reusing each seed's base model, and records holdout accuracy. The gate refuses shadows more
than 10 points less accurate than the victim, so the spread across seeds is what matters.
Results go to `benchmarks/results/classifier_dense.json` and the `classifier-dense` section of
BENCHMARKS.md.

    .venv/bin/python benchmarks/classifier_dense.py [--seeds 0,1,2,3,4,5] [--render-only]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402
from prune import run_meta  # noqa: E402

from prunectl.api import prune  # noqa: E402
from prunectl.config import resolve  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "classifier_dense.json"
SECTION = "classifier-dense"
SETTINGS = {"classifier dense (default)": True, "classifier pruned": False}


def render(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "## classifier-dense: pruned accuracy across seeds, classifier kept dense or pruned",
        "",
        f"- Date: {meta['date']}; machine: {meta['machine']}; command: `{meta['command']}`.",
        "- Digits, builtin CNN, 90% target sparsity, cubic schedule, no defense; each seed's base model is shared by both settings.",
        "",
        "| setting | holdout accuracy per seed (pruned) | min | mean | base accuracy per seed |",
        "|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        chosen = [r for r in rows if r["setting"] == setting]
        pruned = [r["pruned_accuracy"] for r in chosen]
        lines.append(
            f"| {setting} | {' / '.join(f'{a:.1%}' for a in pruned)} | {min(pruned):.1%} | {statistics.mean(pruned):.1%} | "
            f"{' / '.join(f'{a:.1%}' for a in (r['base_accuracy'] for r in chosen))} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        saved = json.loads(RESULTS.read_text())
        update_section(SECTION, render(saved["meta"], saved["rows"]))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="prunectl-bench-dense-") as work:
        for seed in (int(s) for s in args.seeds.split(",")):
            for setting, keep_last in SETTINGS.items():
                flags = {"defense.name": "none", "prune.keep_last_dense": keep_last, "seed": seed}
                recipe = resolve(env={}, flags=flags).recipe
                result = prune(recipe, out=Path(work) / f"{seed}-{keep_last}", cache_dir=Path(work) / "cache")
                row = {"setting": setting, "seed": seed, "base_accuracy": result.base_accuracy, "pruned_accuracy": result.pruned_accuracy}
                print(json.dumps(row), flush=True)
                rows.append(row)
    meta = run_meta()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    update_section(SECTION, render(meta, rows))


if __name__ == "__main__":
    main()
