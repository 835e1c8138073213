"""Gate speed, before vs after (issue #17): the gate's wall time by stage on three workloads.

- `demo`: what `make demo` runs (`prunectl compress --target-sparsity 0.9`, the embedded
  digits and the default recipe: wemem rmr, so every shadow trains memorization-score helpers),
  at the 15 base epochs it had before issue #17 on both sides;
- `leaky-mlp` and `cnn`: `benchmarks/gate.py`'s Fashion-MNIST workloads at 0.9 sparsity.

Each measurement is one child process with a fresh, empty content cache (`PRUNECTL_CACHE_DIR`),
so the gate does all of its work: every shadow's base model, helper models, fine-tuning,
features and attacks. The child prunes, then gates, and reports the gate's own `seconds` by
stage; the parent samples the resident memory of the child and all its worker processes every
0.2 s and keeps the peak during the gate. A side is a source tree: `after` is this checkout,
`before` another tree (a `git worktree` of the commit to compare with), imported first through
PYTHONPATH. Sides are interleaved per repeat, so a busy machine slows both alike; the table
shows medians.

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/gate_speed.py --before-tree /tmp/before --workloads demo,leaky-mlp --repeats 3
    .venv/bin/python benchmarks/gate_speed.py --before-tree /tmp/before --workloads cnn --repeats 1
    .venv/bin/python benchmarks/gate_speed.py --sides after --workloads demo --workers 1,2   # worker scaling
    .venv/bin/python benchmarks/gate_speed.py --sides after --workloads demo --workers 2 --executor ray
    .venv/bin/python benchmarks/gate_speed.py --render-only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results" / "gate_speed.json"
STAGES = ("shadows", "features", "references", "attacks", "total")
WORKLOADS = ("demo", "leaky-mlp", "cnn")


def workload_flags(workload: str) -> dict[str, Any]:
    """The recipe flags of a workload (imported lazily: the parent never imports prunectl)."""
    if workload == "demo":
        # 15 base epochs on both sides: the default recipe's before issue #17 (it trains 10 since),
        # so that only the gate differs between the sides
        return {"name": "bench-gate-speed-demo", "prune.target_sparsity": 0.9, "train.epochs": 15}
    sys.path.insert(0, str(ROOT))
    from gate import WORKLOADS as GATE_WORKLOADS  # noqa: PLC0415
    from prune import RECORDED_DEFAULTS  # noqa: PLC0415

    return {
        **RECORDED_DEFAULTS,
        "name": f"bench-gate-speed-{workload}",
        "data.source": "fashion-mnist",
        "prune.rounds": 5,
        "prune.epochs_per_round": 2,
        "prune.target_sparsity": 0.9,
        **GATE_WORKLOADS[workload],
    }


def child(workload: str, out: Path, report: Path, workers: int | None, executor: str = "local") -> None:
    """Prune then gate one workload with the prunectl on sys.path; write the figures to `report`."""
    import prunectl  # noqa: PLC0415
    from prunectl.api import gate, prune  # noqa: PLC0415
    from prunectl.config import resolve  # noqa: PLC0415

    recipe = resolve(env={}, flags=workload_flags(workload)).recipe
    started = time.perf_counter()
    prune(recipe, out=out, overwrite=True)
    prune_seconds = time.perf_counter() - started
    options: dict[str, Any] = {}
    if workers is not None or executor != "local":
        from prunectl.api import Execution  # noqa: PLC0415  # after side only

        options["execution"] = Execution(executor, workers=workers)
    gate_started = time.time()
    started = time.perf_counter()
    outcome = gate(out, **options)
    wall = time.perf_counter() - started
    result = outcome.result
    audit = result.pruned
    attacks = {m.attack: {"advantage": m.advantage, "auc": m.auc} for m in (audit.attacks if audit else ())}
    report.write_text(
        json.dumps(
            {
                "prunectl": str(Path(prunectl.__file__).parent.parent),
                "prune_seconds": prune_seconds,
                "gate_wall_seconds": wall,
                "gate_started": gate_started,
                "gate_ended": time.time(),
                "seconds": result.seconds,
                "verdict": result.verdict,
                "deciding_attack": result.deciding_attack,
                "gated_value": result.gated_value,
                "attacks": attacks,
                "settings": {k: result.settings.get(k) for k in ("workers", "executor", "unit_threads") if k in result.settings},
            }
        )
    )


def measure(side: str, tree: Path, workload: str, workers: int | None, executor: str = "local") -> dict[str, Any]:
    """One child run of `workload` on the code in `tree`, with the peak RSS of its process tree."""
    import psutil  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="gate-speed-") as scratch:
        report = Path(scratch) / "row.json"
        # no inherited PRUNECTL_* settings: the before side refuses the ones it does not know
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNECTL_")}
        env |= {"PYTHONPATH": str(tree), "PRUNECTL_CACHE_DIR": str(Path(scratch) / "cache")}
        command = [sys.executable, str(ROOT / "gate_speed.py"), "--child", workload, "--out", str(Path(scratch) / "run"), "--report", str(report)]
        if workers is not None:
            command += ["--child-workers", str(workers)]
        if executor != "local":
            command += ["--child-executor", executor]
            env["RAY_USAGE_STATS_ENABLED"] = "0"
        process = subprocess.Popen(command, env=env, cwd=str(tree))
        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def sample() -> None:
            root = psutil.Process(process.pid)
            while not done.is_set():
                try:
                    tree_rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                    samples.append((time.time(), tree_rss))
                except psutil.Error:
                    pass
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
        if code != 0:
            raise SystemExit(f"{side} {workload}: the child exited {code}")
        row = json.loads(report.read_text())
    during = [rss for at, rss in samples if row["gate_started"] <= at <= row["gate_ended"]]
    label = side if executor == "local" else f"{side}, {executor}"
    return {"side": label, "workload": workload, "workers": workers, "executor": executor, "peak_rss_mib": max(during, default=0) / 2**20, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="demo,leaky-mlp")
    parser.add_argument("--sides", default="before,after")
    parser.add_argument("--before-tree", type=Path, help="source tree of the 'before' side (a git worktree)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="", help="after side only: comma-separated worker counts (default: prunectl's default)")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--executor", default="local", choices=("local", "ray"), help="after side only: the gate's executor")
    parser.add_argument("--child-workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-executor", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.out, args.report, args.child_workers, args.child_executor)
        return
    if args.render_only:
        render(json.loads(RESULTS.read_text()))
        return
    sides = args.sides.split(",")
    if "before" in sides and args.before_tree is None:
        parser.error("--before-tree is needed for the 'before' side")
    trees = {"before": args.before_tree, "after": REPO}
    worker_counts: list[int | None] = [int(w) for w in args.workers.split(",") if w] or [None]
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": []}
    sys.path.insert(0, str(ROOT))
    from prune import run_meta  # noqa: PLC0415

    saved["meta"] = run_meta(before_tree=str(args.before_tree) if args.before_tree else None)
    for repeat in range(args.repeats):
        for workload in args.workloads.split(","):
            for side in sides:
                for workers in worker_counts if side == "after" else [None]:
                    row = measure(side, trees[side], workload, workers, args.executor if side == "after" else "local")
                    row.update(repeat=repeat, date=saved["meta"]["date"], machine=saved["meta"]["machine"], command=saved["meta"]["command"])
                    saved["rows"].append(row)
                    RESULTS.parent.mkdir(parents=True, exist_ok=True)
                    RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
                    print(json.dumps({k: row[k] for k in ("side", "workload", "workers", "gate_wall_seconds", "peak_rss_mib", "gated_value")}), flush=True)
    render(saved)


def _median(rows: list[dict[str, Any]], key: str) -> float:
    values = [row["seconds"].get(key, 0.0) if key in (*STAGES, "units_wall") else row[key] for row in rows]
    return statistics.median(values)


def render(saved: dict[str, Any]) -> None:
    """The BENCHMARKS.md section from every recorded row (medians per workload, side and worker count)."""
    sys.path.insert(0, str(ROOT))
    from _report import update_section  # noqa: PLC0415

    rows = saved["rows"]
    groups: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["workload"], row["side"], row.get("workers")), []).append(row)
    lines = [
        "## gate speed: before vs after issue #17, by stage",
        "",
        f"Machine: {saved['meta']['machine']}. Date: {saved['meta']['date']}. Command: `{saved['meta']['command']}` "
        "(and the commands in `benchmarks/gate_speed.py`'s docstring). Raw figures: `benchmarks/results/gate_speed.json`.",
        "",
        "Each cell is the median over the runs (n) of the gate's own `seconds` from `report.json`; every run has a fresh, "
        "empty content cache, so the gate trains every shadow, helper model and attack. Peak RSS is the gate's process "
        "tree (prunectl and its workers), sampled every 0.2 s and summed over the processes, so a page they share (torch's "
        "libraries, the dataset in shared memory) counts once per process: an upper bound on what the machine holds "
        "(`benchmarks/memory.py` also measures the tree's PSS). Gate policy unchanged between the sides: shadows, "
        "attacks, evaluation and attack-training sizes. On the after side the stage columns are work summed over the "
        "units (shadow pipelines, victim readings, attack trainings) that ran side by side on the workers, so they add "
        "up to more than the wall time; `units wall` is the wall time of running them all.",
        "",
        "| workload | side | workers | n | gate wall | units wall | shadows | features | references | attacks | peak RSS | gated advantage |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (workload, side, workers), members in sorted(groups.items(), key=lambda item: (WORKLOADS.index(item[0][0]), item[0][1] != "before", item[0][2] or 0)):
        shown_workers = workers if workers is not None else ("default" if side == "after" else "-")
        advantages = ", ".join(f"{m['gated_value']:+.3f}" for m in members if m.get("gated_value") is not None)
        lines.append(
            f"| {workload} | {side} | {shown_workers} | {len(members)} | {_median(members, 'gate_wall_seconds'):.1f} s | "
            + (f"{_median(members, 'units_wall'):.1f} s | " if all("units_wall" in m["seconds"] for m in members) else "- | ")
            + " | ".join(f"{_median(members, stage):.1f} s" for stage in STAGES[:4])
            + f" | {_median(members, 'peak_rss_mib'):.0f} MiB | {advantages} |"
        )
    ratios = []
    for workload in WORKLOADS:
        before = groups.get((workload, "before", None))
        after = groups.get((workload, "after", None))
        if before and after:
            ratio = _median(after, "gate_wall_seconds") / _median(before, "gate_wall_seconds")
            ratios.append(f"- {workload}: after / before gate wall time = **{ratio:.2f}×** (goal ≤ 0.5×: {'met' if ratio <= 0.5 else 'missed'})")
    for (workload, side, workers), members in groups.items():
        local = groups.get((workload, "after", workers))
        if side == "after, ray" and local:
            ratio = _median(members, "gate_wall_seconds") / _median(local, "gate_wall_seconds")
            ratios.append(f"- {workload}: ray / local at {workers} workers, gate wall time = **{ratio:.2f}×**")
    if ratios:
        lines += ["", *ratios]
    if saved.get("reading"):
        lines += ["", saved["reading"]]
    update_section("gate-speed", "\n".join(lines))


if __name__ == "__main__":
    main()
