"""SAMIA's training cost (issue #17): the same rows and features, cheaper settings, equal strength?

`capture`: for each workload (`leaky-mlp`, `cnn` of benchmarks/gate.py, Fashion-MNIST, 0.9
sparsity, the recorded defaults) prune a victim through the product and gate it with SAMIA
only, recording (by wrapping `SamiaAttack.fit`/`score` in this process) the exact shadow
features and membership SAMIA trains on and the victim evaluation features it scores, for the
pruned and the original model. They are cached in `benchmarks/.cache/samia_cost/WORKLOAD.npz`;
later runs skip the gate.

`study`: on those features, every candidate (a full set of SAMIA's training settings, so the
figures stay meaningful after the defaults change) trains with each of `--seeds` attack seeds,
candidates interleaved within a seed, torch at `--threads` intra-op threads (the gate runs
each attack in a worker at one). Per fit: training seconds, epochs run, validation AUC, and
the AUC and advantage (TPR - FPR at `attack.threshold`, `gates.metrics`) on the victim's
evaluation set. `profile` runs a few epochs of today's training under torch.profiler.
Results go to `benchmarks/results/samia_cost.json` and the `samia-cost` section of
BENCHMARKS.md.

    .venv/bin/python benchmarks/samia_cost.py capture [--workloads leaky-mlp,cnn]
    .venv/bin/python benchmarks/samia_cost.py profile [--workloads leaky-mlp] [--threads 1,2]
    .venv/bin/python benchmarks/samia_cost.py study [--workloads leaky-mlp,cnn] [--seeds 5] [--candidates a,b]
    .venv/bin/python benchmarks/samia_cost.py render
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402
from prune import RECORDED_DEFAULTS, run_meta  # noqa: E402

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache" / "samia_cost"
RESULTS = ROOT / "results" / "samia_cost.json"
KINDS = ("pruned", "original")

TODAY = {"samia_max_epochs": 40, "samia_patience": 5, "samia_batch_size": 128, "samia_lr": 1e-3}
"""SAMIA's training settings before issue #17 (commit 1d2e2c1)."""
CANDIDATES: dict[str, dict[str, Any]] = {
    "today": TODAY,
    # traced only to patience 3: shorter patiences are what they are for
    "b128-lr2e-3": {**TODAY, "samia_lr": 2e-3, "samia_patience": 3},
    "b512-lr2e-3": {**TODAY, "samia_batch_size": 512, "samia_lr": 2e-3, "samia_patience": 3},
    "b512-lr4e-3": {**TODAY, "samia_batch_size": 512, "samia_lr": 4e-3, "samia_patience": 3},
}
TRACED = ("today", "b128-lr2e-3", "b512-lr4e-3")
"""Trained with a per-epoch trace; shorter patiences are replayed from the trace."""
CHOSEN = "today"
"""The candidate measured against today in untraced runs (`study`)."""


# ---------------------------------------------------------------------------------------------
# capture


def _flags(workload: str) -> dict[str, Any]:
    from gate import WORKLOADS  # benchmarks/gate.py: the gate benchmark's workloads

    return {
        **RECORDED_DEFAULTS,
        "name": f"bench-samia-cost-{workload}",
        "data.source": "fashion-mnist",
        "prune.rounds": 5,
        "prune.epochs_per_round": 2,
        "prune.target_sparsity": 0.9,
        # SAMIA's inputs do not depend on which other attacks run; skipping them saves CPU
        "gate.attacks": ("samia",),
        **WORKLOADS[workload],
    }


def capture(workload: str) -> Path:
    """Prune and gate `workload`; save SAMIA's exact inputs to the cache. Returns the .npz path."""
    from gates.attacks.samia import SamiaAttack
    from gates.seeds import derive_seed
    from prunectl.api import Execution, gate, prune
    from prunectl.config import resolve

    import gate as gate_bench

    recipe = resolve(env={}, flags=_flags(workload)).recipe
    work = CACHE / workload
    started = time.perf_counter()
    prune(recipe, out=work / "run", overwrite=True, progress=gate_bench.LogProgress())
    prune_seconds = time.perf_counter() - started

    kind_of_seed = {derive_seed(recipe.seed, "attack", kind): kind for kind in KINDS}
    seen: dict[str, dict[str, Any]] = {}
    real_fit, real_score = SamiaAttack.fit, SamiaAttack.score

    def fit(self: SamiaAttack, features: Any, membership: Any, on_epoch: Any = None) -> None:
        kind = kind_of_seed[self.context.seed]
        self._capture_kind = kind  # type: ignore[attr-defined]
        began = time.perf_counter()
        real_fit(self, features, membership, on_epoch)
        seen[kind] = {
            "shadow": features,
            "membership": np.asarray(membership, dtype=np.int64),
            "scored": [],
            "fit_seconds": time.perf_counter() - began,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "validation_auc": self.validation_auc,
            "threshold": self.threshold,
            "settings": dataclasses.asdict(self.settings),
            "seed": self.context.seed,
            "threads": torch.get_num_threads(),
        }

    def score(self: SamiaAttack, features: Any) -> Any:
        scores = real_score(self, features)
        seen[self._capture_kind]["scored"].append((features, np.asarray(scores)))  # type: ignore[attr-defined]
        return scores

    SamiaAttack.fit, SamiaAttack.score = fit, score  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        # one in-process worker: the wrapped fit and score must run in this process
        outcome = gate(
            work / "run", cache_dir=work / "gate-cache", progress=gate_bench.LogProgress(), execution=Execution(workers=1)
        )
        gate_seconds = time.perf_counter() - started
    finally:
        SamiaAttack.fit, SamiaAttack.score = real_fit, real_score  # type: ignore[method-assign]

    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "workload": workload,
        "flags": {k: list(v) if isinstance(v, tuple) else v for k, v in _flags(workload).items()},
        "prune_seconds": prune_seconds,
        "gate_seconds": gate_seconds,
        "gate_stage_seconds": outcome.result.seconds,
        "product": str(Path(sys.modules[SamiaAttack.__module__].__file__).parent.parent.parent),
    }
    for kind in KINDS:
        record = seen[kind]
        audit = getattr(outcome.result, kind)
        evaluated, gate_scores = record["scored"][0]  # the first score call: the evaluation set
        membership = np.asarray(audit.membership, dtype=np.int64)
        # EvaluationSet.membership: the members first, then as many non-members
        half = len(membership) // 2
        assert len(evaluated) == len(membership) and membership[:half].all() and not membership[half:].any()
        assert np.array_equal(gate_scores, audit.scores["samia"]), "captured scores are not the gate's"
        for part, features in (("shadow", record["shadow"]), ("eval", evaluated)):
            for field in ("posteriors", "sensitivity", "labels", "indices"):
                arrays[f"{kind}_{part}_{field}"] = getattr(features, field)
        arrays[f"{kind}_shadow_membership"] = record["membership"]
        arrays[f"{kind}_eval_membership"] = membership
        metrics = audit.metrics("samia")
        meta[kind] = {
            **{key: record[key] for key in ("fit_seconds", "epochs_run", "best_epoch", "validation_auc", "threshold", "settings", "seed", "threads")},
            "holdout_accuracy": audit.holdout_accuracy,
            "shadow_rows": len(record["membership"]),
            "eval_rows": len(membership),
            "gate_auc": metrics.auc,
            "gate_advantage": metrics.advantage,
        }
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{workload}.npz"
    np.savez_compressed(path, **arrays)
    (CACHE / f"{workload}.json").write_text(json.dumps(meta, indent=2, default=float) + "\n")
    print(json.dumps({kind: meta[kind] for kind in KINDS}, indent=2, default=float), flush=True)
    return path


def load(workload: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """({kind: (shadow features, shadow membership, eval features, eval membership)}, capture meta)."""
    from gates.features import AttackFeatures

    data = np.load(CACHE / f"{workload}.npz")
    meta = json.loads((CACHE / f"{workload}.json").read_text())

    def features(prefix: str) -> AttackFeatures:
        return AttackFeatures(*(data[f"{prefix}_{field}"] for field in ("posteriors", "sensitivity", "labels", "indices")))

    inputs = {
        kind: (features(f"{kind}_shadow"), data[f"{kind}_shadow_membership"], features(f"{kind}_eval"), data[f"{kind}_eval_membership"])
        for kind in KINDS
    }
    return inputs, meta


# ---------------------------------------------------------------------------------------------
# study


class _Trace:
    """Per epoch, through SAMIA's `on_epoch` hook: elapsed training seconds and the figures of the
    network as it stands (validation AUC and threshold, evaluation AUC and advantage).

    It scores the live network in eval mode without gradients, which draws no random numbers, so
    the training it watches is the untraced one; its own time is subtracted. A shorter patience
    or epoch cap stops the same run at a prefix of these epochs, so `simulate` replays them.
    """

    def __init__(self, attack: Any, shadow: Any, membership: Any, evaluated: Any, eval_membership: Any) -> None:
        self.attack, self.shadow, self.membership = attack, shadow, membership
        self.evaluated, self.eval_membership = evaluated, eval_membership
        self.networks: list[Any] = []
        self.epochs: list[dict[str, float]] = []
        self.started = self.own = 0.0

    def __call__(self, epoch: int, total: int) -> None:
        from gates import metrics
        from gates.attacks import samia

        began = time.perf_counter()
        network = self.networks[-1]
        positions = self.attack.validation_positions
        val = samia._member_probability(network, torch.from_numpy(samia._inputs(self.shadow.subset(positions))))
        threshold = metrics.best_threshold(val, self.membership[positions])
        scores = samia._member_probability(network, torch.from_numpy(samia._inputs(self.evaluated)))
        self.epochs.append(
            {
                "seconds": began - self.started - self.own,
                "validation_auc": metrics.auc(val, self.membership[positions]),
                "threshold": threshold,
                "eval_auc": metrics.auc(scores, self.eval_membership),
                "eval_advantage": metrics.advantage(scores, self.eval_membership, threshold),
            }
        )
        self.own += time.perf_counter() - began


def one_fit(
    candidate: dict[str, Any], seed: int, shadow: Any, membership: Any, evaluated: Any, eval_membership: Any, trace: bool = False
) -> dict[str, Any]:
    from gates import metrics
    from gates.attacks import samia_network
    from gates.attacks.base import AttackContext
    from gates.attacks.samia import SamiaAttack, SamiaSettings

    attack = SamiaAttack(SamiaSettings(**candidate), AttackContext(seed=seed))
    tracer = _Trace(attack, shadow, membership, evaluated, eval_membership) if trace else None
    real_network = samia_network.SamiaNetwork
    if tracer is not None:

        def network(*args: Any, **kwargs: Any) -> Any:
            tracer.networks.append(real_network(*args, **kwargs))
            return tracer.networks[-1]

        samia_network.SamiaNetwork = network  # type: ignore[misc]  # this process only
    try:
        began, cpu = time.perf_counter(), time.process_time()
        if tracer is not None:
            tracer.started = began
        attack.fit(shadow, membership, on_epoch=tracer)
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
    finally:
        samia_network.SamiaNetwork = real_network  # type: ignore[misc]
    scores = np.asarray(attack.score(evaluated), dtype=np.float64)
    row = {
        "seconds": seconds - (tracer.own if tracer else 0.0),
        "cpu_seconds": cpu_seconds - (tracer.own if tracer else 0.0),
        "epochs_run": attack.epochs_run,
        "best_epoch": attack.best_epoch,
        "trained_rows": attack.trained_rows,
        "validation_auc": attack.validation_auc,
        "threshold": attack.threshold,
        "eval_auc": metrics.auc(scores, eval_membership),
        "eval_advantage": metrics.advantage(scores, eval_membership, attack.threshold),
        "eval_best_advantage": metrics.best_advantage(scores, eval_membership),
    }
    if tracer is not None:
        row["epochs"] = tracer.epochs
        kept = tracer.epochs[attack.best_epoch - 1]
        # the trace must describe the run it watched: its best epoch is the weights the attack kept
        assert kept["validation_auc"] == row["validation_auc"] and kept["eval_auc"] == row["eval_auc"], (kept, row)
    return row


def simulate(row: dict[str, Any], patience: int, max_epochs: int) -> dict[str, Any]:
    """The figures `row`'s traced run would have had with this patience and epoch cap (at most its own)."""
    assert patience <= row["settings"]["samia_patience"] and max_epochs <= row["settings"]["samia_max_epochs"]
    epochs = row["epochs"]
    best, best_epoch, stale, stop = -float("inf"), 0, 0, 0
    for stop, epoch in enumerate(epochs[:max_epochs], start=1):
        if epoch["validation_auc"] > best:
            best, best_epoch, stale = epoch["validation_auc"], stop, 0
        else:
            stale += 1
        if stale >= patience:
            break
    tail = row["seconds"] - epochs[-1]["seconds"]  # restoring the best weights and choosing the threshold
    kept = epochs[best_epoch - 1]
    return {
        **{key: row[key] for key in ("workload", "kind", "seed", "threads", "trained_rows")},
        "settings": {**row["settings"], "samia_patience": patience, "samia_max_epochs": max_epochs},
        "simulated_from": row["candidate"],
        "seconds": epochs[stop - 1]["seconds"] + tail,
        "epochs_run": stop,
        "best_epoch": best_epoch,
        **{key: kept[key] for key in ("validation_auc", "threshold", "eval_auc", "eval_advantage")},
    }


def study(workloads: list[str], names: list[str], seeds: int, threads: int, trace: bool) -> None:
    torch.set_num_threads(threads)
    step = "traced" if trace else "fits"
    fits: list[dict[str, Any]] = []
    captures: dict[str, Any] = {}
    for workload in workloads:
        inputs, captures[workload] = load(workload)
        for seed in range(seeds):
            order = names[seed % len(names) :] + names[: seed % len(names)]  # interleaved, rotated
            for name in order:
                for kind in KINDS:
                    row = {"workload": workload, "candidate": name, "kind": kind, "seed": seed, "threads": threads}
                    row |= {"settings": CANDIDATES[name], **one_fit(CANDIDATES[name], seed, *inputs[kind], trace=trace)}
                    fits.append(row)
                    print(
                        f"{workload:9} {kind:8} seed {seed} {name:16} {row['seconds']:6.1f} s  {row['epochs_run']:2} ep "
                        f"(best {row['best_epoch']:2})  val AUC {row['validation_auc']:.4f}  eval AUC {row['eval_auc']:.4f}  "
                        f"adv {row['eval_advantage']:.4f}",
                        flush=True,
                    )
                    _save_rows(step, (workloads, names, threads), fits, captures, run_meta(threads=threads, seeds=seeds))


def _save_rows(step: str, scope: tuple[list[str], list[str], int], fits: list[dict[str, Any]], captures: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write this study's rows in place of the saved ones it repeats (same workloads, candidates
    and threads), keeping what other studies (another workload, run alongside) saved meanwhile."""
    workloads, names, threads = scope
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    kept = [f for f in saved.get(step, []) if not (f["workload"] in workloads and f["candidate"] in names and f["threads"] == threads)]
    saved |= {"candidates": CANDIDATES, "captures": {**saved.get("captures", {}), **captures}, step: kept + fits}
    saved[f"meta_{step}"] = meta
    _save(saved)


def _save(results: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    partial = RESULTS.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(results, indent=2, default=float) + "\n")
    partial.replace(RESULTS)  # whole, for a study of another workload reading it alongside


# ---------------------------------------------------------------------------------------------
# profile


def profile(workload: str, threads: int, epochs: int = 2) -> dict[str, Any]:
    """Today's settings for `epochs` epochs (no early stop) under torch.profiler: the top ops."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(threads)
    inputs, _ = load(workload)
    shadow, membership, evaluated, eval_membership = inputs["pruned"]
    candidate = {**TODAY, "samia_max_epochs": epochs}
    one_fit(candidate, 0, shadow, membership, evaluated, eval_membership)  # warm-up outside the profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        timing = one_fit(candidate, 0, shadow, membership, evaluated, eval_membership)
    averages = prof.key_averages()
    total = sum(event.self_cpu_time_total for event in averages)
    top = sorted(averages, key=lambda event: event.self_cpu_time_total, reverse=True)[:20]
    table = [
        {"op": event.key, "calls": event.count, "self_ms": event.self_cpu_time_total / 1e3, "share": event.self_cpu_time_total / total}
        for event in top
    ]
    print(averages.table(sort_by="self_cpu_time_total", row_limit=20), flush=True)
    return {"workload": workload, "threads": threads, "epochs": epochs, "fit_seconds": timing["seconds"], "self_ms_total": total / 1e3, "top_ops": table}


# ---------------------------------------------------------------------------------------------
# report


REPLAYS: tuple[tuple[int, int | None], ...] = ((2, None), (3, None), (5, None), (2, 6))
"""(patience, epoch cap or None for the run's own) at which `simulated` replays every traced run.
(2, 6) is what became the default in issue #17."""


def simulated(traced: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every traced run replayed at each of REPLAYS, named "CANDIDATE pP" or "CANDIDATE pP ≤E"."""
    return [
        {
            **simulate(row, patience, cap or row["settings"]["samia_max_epochs"]),
            "candidate": f"{row['candidate']} p{patience}" + (f" ≤{cap}" if cap else ""),
        }
        for row in traced
        for patience, cap in REPLAYS
        if patience <= row["settings"]["samia_patience"]
    ]


def workload_ratio(replays: list[dict[str, Any]], candidate: str, baseline: str = "today p5") -> float:
    """SAMIA's whole cost in one gate (both models, summed over seeds) under `candidate` / `baseline`,
    from `simulated` replays."""
    total = {name: sum(r["seconds"] for r in replays if r["candidate"] == name) for name in (candidate, baseline)}
    return total[candidate] / total[baseline]


def summarise(fits: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Per (workload, kind, candidate): mean and std over seeds, and the median over seeds of the
    time ratio to `baseline` on the same seed."""
    rows = []
    names = list(dict.fromkeys(f["candidate"] for f in fits))
    keys = sorted({(f["workload"], f["kind"], f["candidate"]) for f in fits}, key=lambda k: (k[0], KINDS.index(k[1]), names.index(k[2])))
    for workload, kind, name in keys:
        group = [f for f in fits if (f["workload"], f["kind"], f["candidate"]) == (workload, kind, name)]
        base = {f["seed"]: f for f in fits if (f["workload"], f["kind"], f["candidate"]) == (workload, kind, baseline)}
        ratios = [f["seconds"] / base[f["seed"]]["seconds"] for f in group if f["seed"] in base]
        row: dict[str, Any] = {"workload": workload, "kind": kind, "candidate": name, "settings": group[0]["settings"], "seeds": len(group)}
        for key in ("seconds", "epochs_run", "best_epoch", "validation_auc", "eval_auc", "eval_advantage"):
            values = [f[key] for f in group]
            row[key] = [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")]
        row["time_ratio"] = statistics.median(ratios) if ratios else float("nan")
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> list[str]:
    def pm(r: dict[str, Any], key: str, digits: int = 3) -> str:
        mean, std = r[key]
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    lines = [
        "| model | candidate | batch | lr | patience | max epochs | seconds | ratio | epochs | val AUC | eval AUC | eval advantage |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["settings"]
        lines.append(
            f"| {r['kind']} | {r['candidate']} | {s['samia_batch_size']} | {s['samia_lr']:g} | {s['samia_patience']} | {s['samia_max_epochs']} "
            f"| {pm(r, 'seconds', 1)} | {r['time_ratio']:.2f} | {pm(r, 'epochs_run', 1)} | {pm(r, 'validation_auc')} "
            f"| {pm(r, 'eval_auc')} | {pm(r, 'eval_advantage')} |"
        )
    return lines


def render(saved: dict[str, Any]) -> str:
    meta = saved.get("meta_fits") or saved["meta_traced"]
    lines = [
        "## samia cost",
        "",
        f"{meta['date']} · {meta['machine']} · `{meta['command']}` · torch {meta['versions']['torch']}",
        "",
        "SAMIA's training alone (issue #17), on the exact shadow features and victim evaluation set the gate gives it, "
        "captured from `prunectl.api.gate` (SAMIA only) on the "
        + " and ".join(f"`{workload}`" for workload in saved["captures"])
        + f" workload of benchmarks/gate.py at 0.9 sparsity; {meta['seeds']} attack seeds per candidate, candidates interleaved, torch at {meta['threads']} "
        "thread (the gate's attack workers run at one). Mean ± std over seeds; the ratio is the median over seeds of "
        "training seconds / today's on the same seed. The advantage is TPR − FPR at the attack's own threshold "
        "(`gates.metrics.advantage`), on the victim's evaluation set.",
        "",
    ]
    for workload, capture_meta in saved["captures"].items():
        pruned = capture_meta["pruned"]
        lines += [
            f"### {workload}",
            "",
            f"{pruned['shadow_rows']} shadow rows, {pruned['eval_rows']} evaluation rows. In the gate (torch threads "
            f"{pruned['threads']}) SAMIA took {pruned['fit_seconds']:.0f} s on the pruned model and "
            f"{capture_meta['original']['fit_seconds']:.0f} s on the original, of a {capture_meta['gate_seconds']:.0f} s gate.",
            "",
        ]
        fits = [f for f in saved.get("fits", []) if f["workload"] == workload]
        if fits:
            lines += ["Measured runs:", "", *_table(summarise(fits, "today")), ""]
        traced = [f for f in saved.get("traced", []) if f["workload"] == workload]
        if traced:
            replays = simulated(traced)
            lines += [
                "Traced runs replayed at a shorter patience or epoch cap (the same run, stopped at a prefix of its epochs; "
                "the ratio is to today's settings, patience 5 and at most 40 epochs):",
                "",
                *_table(summarise(replays, "today p5")),
                "",
                f"SAMIA's whole cost in this gate (both models, all seeds) at the new default `{DEFAULT_REPLAY}`: "
                f"**{workload_ratio(replays, DEFAULT_REPLAY):.2f}×** today's.",
                "",
            ]
    for key, prof in saved.get("profiles", {}).items():
        ops = ", ".join(f"{op['op']} {op['share']:.0%}" for op in prof["top_ops"][:8])
        where = saved.get("meta", {}).get("machine", "").split(", torch threads")[0]
        lines.append(f"Profile ({key}, {prof['epochs']} epochs of today's settings, {prof['fit_seconds']:.1f} s, {where}): {ops}.")
        lines.append("")
    if saved.get("conclusion"):
        lines += [saved["conclusion"], ""]
    return "\n".join(lines)


DEFAULT_REPLAY = "today p2 ≤6"
"""The replay that holds the defaults issue #17 chose (today's batch and learning rate, patience 2, at most 6 epochs)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("capture", "profile", "trace", "study", "render"))
    parser.add_argument("--workloads", default="leaky-mlp,cnn")
    parser.add_argument("--candidates", help="trace: TRACED; study: today and CHOSEN")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", default="1", help="torch intra-op threads (profile: a comma-separated list)")
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    if args.step == "capture":
        for workload in workloads:
            capture(workload)
    elif args.step == "profile":
        saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        saved.setdefault("profiles", {})
        for workload in workloads:
            for threads in map(int, args.threads.split(",")):
                saved["profiles"][f"{workload}, {threads} thread(s)"] = profile(workload, threads)
                _save(saved)
    elif args.step in ("trace", "study"):
        default = TRACED if args.step == "trace" else ("today", CHOSEN)
        names = args.candidates.split(",") if args.candidates else list(default)
        study(workloads, names, args.seeds, int(args.threads), trace=args.step == "trace")
        update_section("samia-cost", render(json.loads(RESULTS.read_text())))
    else:
        update_section("samia-cost", render(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
