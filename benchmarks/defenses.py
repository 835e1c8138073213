"""Defense benchmark: Fashion-MNIST at 90% sparsity, no defense vs KL vs WeMem, two workloads.

- `cnn`: the builtin CNN on 5k members (realistic: little overfitting).
- `leaky-mlp`: an MLP 784-256-256-10 on 2k members, trained to a large train/test gap.

Every setting prunes the workload's recipe to 0.9 in 5 rounds and gates the result through the
product (`prunectl.api.prune` then `prunectl.api.gate`: 2 shadows re-running the recipe with its
defense, SAMIA and the threshold family). Settings: `none`, `kl-1`, `kl-4`, `kl-16`
(`defense.kl_weight`), `wemem-rsw`, `wemem-rmr`, `wemem-swmr`. Base models (the victim's and the
shadows') and memorization scores live in one content-addressed cache, so settings that only
change fine-tuning reuse them. A row per (workload, setting) goes to
`benchmarks/results/defenses.json` as soon as it is measured; rows already there are skipped
(resume) unless `--force`. Also measured: the cost of memorization scores (K=8 models on the
members, twice with different seeds in a fresh cache) and the rank correlation of the two
estimates. The table goes to the `defenses` section of BENCHMARKS.md, the plot to
`benchmarks/defenses.png`.

    .venv/bin/python benchmarks/defenses.py [--workloads cnn,leaky-mlp] [--settings none,kl-4,...]
        [--force] [--memscore-only] [--render-only]

`--smoke` runs the same code on the builtin digits data with tiny training (2 rounds × 2 epochs,
10 base epochs, the gate's shadow-quality check relaxed) and writes everything (results,
BENCHMARKS.md, plot, runs, cache) to a fresh temporary directory (or `--work DIR`, to resume a
smoke run) instead of the repository: a check that the script works, not a benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402
from gate import WORKLOADS as GATE_WORKLOADS  # noqa: E402
from gate import LogProgress  # noqa: E402
from prune import RECORDED_DEFAULTS, run_meta  # noqa: E402

from exporters.atomic import atomic_write_bytes, atomic_write_json  # noqa: E402
from gates.gate import GatePolicy  # noqa: E402
from prunectl.api import gate, memscore, prune  # noqa: E402
from prunectl.config import resolve  # noqa: E402
from prunectl.data import FASHION_MNIST_DIR  # noqa: E402

ROOT = Path(__file__).resolve().parent
SECTION = "defenses"
TARGET_SPARSITY = 0.9
MEMSCORE_MODELS = 8

WORKLOADS: dict[str, dict[str, Any]] = {
    "cnn": {
        "data.members": 5000,
        "data.dev": 1000,
        "data.holdout": 5000,
        "data.shadow_pool": 12000,
        "model.source": "builtin:cnn",
        "train.epochs": 10,
        "train.batch_size": 128,
        # The gate's cost is shadows × (features of attack_train_size + eval rows): capped here.
        "gate.eval_size": 2500,
        "gate.attack_train_size": 4000,
    },
    "leaky-mlp": dict(GATE_WORKLOADS["leaky-mlp"]),  # the gate benchmark's, unchanged
}
SETTINGS: dict[str, dict[str, Any]] = {
    "none": {"defense.name": "none"},
    "kl-1": {"defense.name": "kl", "defense.kl_weight": 1.0},
    "kl-4": {"defense.name": "kl", "defense.kl_weight": 4.0},
    "kl-16": {"defense.name": "kl", "defense.kl_weight": 16.0},
    "wemem-rsw": {"defense.name": "wemem", "defense.wemem_variant": "rsw"},
    "wemem-rmr": {"defense.name": "wemem", "defense.wemem_variant": "rmr"},
    "wemem-swmr": {"defense.name": "wemem", "defense.wemem_variant": "swmr"},
    # compress's default since issue #6 (the rows above keep the paper's threshold, 0.5)
    "wemem-rmr-0.25": {"defense.name": "wemem", "defense.wemem_variant": "rmr", "defense.rmr_threshold": 0.25},
}
GATE_SHADOWS = 2
# The original (unpruned) model is the same for every setting of a workload (its base model and
# the shadows' come from the cache), so only the `none` run audits it.
AUDIT_ORIGINAL_FOR = ("none",)
# Smoke mode: digits with its default splits and tiny training. Its pruned shadows land far from the
# victim often enough that the gate would refuse most rows; the smoke checks this script, so it lets them through.
SMOKE = {"data.source": "digits", "train.epochs": 10, "rounds": 2, "epochs_per_round": 2, "gate.max_shadow_accuracy_drop": 1.0}


@dataclasses.dataclass(frozen=True)
class Paths:
    results: Path
    plot: Path
    markdown: Path
    runs: Path
    cache: Path

    @classmethod
    def under(cls, work: Path, results: Path, plot: Path, markdown: Path) -> Paths:
        return cls(results, plot, markdown, work / "runs", work / "cache")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma list of " + ", ".join(WORKLOADS))
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma list of " + ", ".join(SETTINGS))
    parser.add_argument("--rounds", type=int, help="prune rounds (default 5; smoke 2)")
    parser.add_argument("--epochs-per-round", type=int, help="fine-tuning epochs per round (default 2; smoke 2)")
    parser.add_argument("--work", type=Path, help="run directories and the shared cache (default benchmarks/.cache/defenses)")
    parser.add_argument("--force", action="store_true", help="redo rows (and memorization-score measurements) already in the results")
    parser.add_argument("--memscore-only", action="store_true", help="only measure the memorization-score cost")
    parser.add_argument("--render-only", action="store_true", help="rewrite BENCHMARKS.md and the plot from the last results")
    parser.add_argument("--smoke", action="store_true", help="digits, tiny training, everything in a fresh temporary directory")
    args = parser.parse_args()
    workloads = _choose(parser, args.workloads, WORKLOADS, "--workloads")
    settings = _choose(parser, args.settings, SETTINGS, "--settings")

    if args.smoke:
        work = args.work or Path(tempfile.mkdtemp(prefix="defenses-smoke-"))
        paths = Paths.under(work, work / "defenses.json", work / "defenses.png", work / "BENCHMARKS.md")
        print(f"smoke mode: digits, tiny training; everything goes to {work}", flush=True)
    else:
        work = args.work or ROOT / ".cache" / "defenses"
        paths = Paths.under(work, ROOT / "results" / "defenses.json", ROOT / "defenses.png", Path("BENCHMARKS.md"))
    defaults = SMOKE if args.smoke else {"rounds": 5, "epochs_per_round": 2}
    args.rounds = args.rounds or defaults["rounds"]
    args.epochs_per_round = args.epochs_per_round or defaults["epochs_per_round"]
    if args.render_only:
        saved = _load(paths.results)
        publish(paths, saved["meta"], saved["rows"], saved["memscore"])
        return
    if not args.smoke and not FASHION_MNIST_DIR.is_dir():
        print(
            f"skipped: Fashion-MNIST is not at {FASHION_MNIST_DIR} (install it with 'apt-get install dataset-fashion-mnist'); "
            "nothing was measured and the results are unchanged",
            file=sys.stderr,
        )
        return

    meta = run_meta(
        rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
        target_sparsity=TARGET_SPARSITY,
        smoke=args.smoke,
    )
    saved = _load(paths.results) if paths.results.is_file() else {"rows": [], "memscore": {}}
    rows, scores = saved["rows"], saved["memscore"]
    schedule = {"rounds": args.rounds, "epochs_per_round": args.epochs_per_round}
    stale = [r for r in rows if {k: r.get(k) for k in schedule} != schedule]
    if stale and not args.force and not args.memscore_only:
        parser.error(
            f"{paths.results} holds rows pruned with --rounds {stale[0].get('rounds')} --epochs-per-round "
            f"{stale[0].get('epochs_per_round')}; resume with those, or --force to redo the chosen rows"
        )
    if not args.memscore_only:
        for workload in workloads:
            for setting in settings:
                done = [r for r in rows if (r["workload"], r["setting"]) == (workload, setting)]
                if done and not args.force:
                    print(f"{workload} {setting}: in {paths.results} already ({done[0]['date']}); --force redoes it", flush=True)
                    continue
                row = measure_row(workload, setting, meta, paths, smoke=args.smoke)
                rows = [r for r in rows if (r["workload"], r["setting"]) != (workload, setting)] + [row]
                save(paths, meta, rows, scores)
    for workload in workloads:
        if workload in scores and not args.force:
            print(f"{workload} memorization scores: in {paths.results} already ({scores[workload]['date']}); --force redoes it", flush=True)
            continue
        scores = {**scores, workload: measure_memscore(workload, meta, smoke=args.smoke)}
        save(paths, meta, rows, scores)
    if args.smoke:
        print(f"smoke results: {paths.results}, {paths.markdown}, {paths.plot}", flush=True)


def _choose(parser: argparse.ArgumentParser, text: str, known: dict[str, Any], flag: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        parser.error(f"{flag}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(known)}")
    return chosen


def _load(path: Path) -> dict[str, Any]:
    saved = json.loads(path.read_text())
    return {"meta": saved["meta"], "rows": saved.get("rows", []), "memscore": saved.get("memscore", {})}


def workload_flags(workload: str, *, rounds: int, epochs_per_round: int, smoke: bool) -> dict[str, Any]:
    """The workload's recipe flags (no defense); in smoke mode digits with its default splits."""
    flags = {
        # One name for every setting: nothing that is cached should differ by more than the defense.
        **RECORDED_DEFAULTS,
        "name": f"bench-defenses-{workload}",
        "data.source": "fashion-mnist",
        "prune.target_sparsity": TARGET_SPARSITY,
        "prune.rounds": rounds,
        "prune.epochs_per_round": epochs_per_round,
        **WORKLOADS[workload],
    }
    if smoke:
        flags = {k: v for k, v in flags.items() if not k.startswith("data.")}
        flags.update({key: SMOKE[key] for key in ("data.source", "train.epochs", "gate.max_shadow_accuracy_drop")})
    return flags


def measure_row(workload: str, setting: str, meta: dict[str, Any], paths: Paths, *, smoke: bool) -> dict[str, Any]:
    flags = {
        **workload_flags(workload, rounds=meta["rounds"], epochs_per_round=meta["epochs_per_round"], smoke=smoke),
        **SETTINGS[setting],
        "gate.shadows": GATE_SHADOWS,
        "gate.audit_original": setting in AUDIT_ORIGINAL_FOR,
    }
    recipe = resolve(env={}, flags=flags).recipe
    out = paths.runs / f"{workload}-{setting}"
    print(f"{workload} {setting}: pruning into {out}", flush=True)
    started = time.perf_counter()
    pruned = prune(recipe, out=out, overwrite=True, progress=LogProgress(), cache_dir=paths.cache)
    prune_seconds = time.perf_counter() - started
    started = time.perf_counter()
    outcome = gate(out, progress=LogProgress(), cache_dir=paths.cache)
    gate_seconds = time.perf_counter() - started
    result = outcome.result
    reported = pruned.to_dict()
    row = {
        "workload": workload,
        "setting": setting,
        "date": meta["date"],
        "command": meta["command"],
        "defense": recipe.to_dict()["defense"],
        "defense_recorded": _recorded_defense(reported, out),
        "base_source": reported.get("base_source"),
        "target_sparsity": recipe.prune.target_sparsity,
        "rounds": recipe.prune.rounds,
        "epochs_per_round": recipe.prune.epochs_per_round,
        "schedule": recipe.prune.schedule,
        "scope": recipe.prune.scope,
        "achieved_sparsity": pruned.sparsity["global_sparsity"],
        "accuracy": {
            "original_members": pruned.base_member_accuracy,
            "original_holdout": pruned.base_accuracy,
            "pruned_members": pruned.pruned_member_accuracy,
            "pruned_holdout": pruned.pruned_accuracy,
        },
        "split_sizes": pruned.split_sizes,
        "train": {"epochs": recipe.train.epochs, "batch_size": recipe.train.batch_size},
        "prune_seconds": prune_seconds,
        "prune_stage_seconds": pruned.seconds,
        "round_seconds": [r["seconds"] for r in pruned.rounds],
        "gate_seconds": gate_seconds,
        "gate": result.to_dict(),
    }
    samia = _attack(row["gate"].get("pruned"), "samia")
    print(
        f"  {workload} {setting}: holdout {pruned.base_accuracy:.2%} → {pruned.pruned_accuracy:.2%}, "
        f"SAMIA advantage {_adv_cell(samia)}, verdict {result.verdict} ({result.reason}); "
        f"prune {prune_seconds:.0f} s, gate {gate_seconds:.0f} s",
        flush=True,
    )
    return row


def _recorded_defense(prune_result: dict[str, Any], run_dir: Path) -> Any:
    """What the run itself says about its defense (prune.json or the manifest), if it says anything."""
    if prune_result.get("defense") is not None:
        return prune_result["defense"]
    manifest = run_dir / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text()).get("defense")
    return None


def measure_memscore(workload: str, meta: dict[str, Any], *, smoke: bool) -> dict[str, Any]:
    """K=8 memorization scores of the members, computed (not read from a cache) twice with two seeds."""
    flags = workload_flags(workload, rounds=meta["rounds"], epochs_per_round=meta["epochs_per_round"], smoke=smoke)
    recipe = resolve(env={}, flags={**flags, "defense.memscore_models": MEMSCORE_MODELS}).recipe
    runs, estimates = [], []
    for seed in (recipe.seed, recipe.seed + 1):
        with tempfile.TemporaryDirectory(prefix="memscore-fresh-") as fresh:
            print(f"{workload} memorization scores: K={MEMSCORE_MODELS}, seed {seed}, fresh cache {fresh}", flush=True)
            started = time.perf_counter()
            computed = memscore(recipe, models=MEMSCORE_MODELS, seed=seed, cache_dir=Path(fresh), progress=LogProgress())
            wall = time.perf_counter() - started
        if computed.cached:
            raise RuntimeError(f"memscore read a fresh, empty cache as a hit ({workload}, seed {seed}); its wall time would be meaningless")
        estimates.append(computed.scores)
        runs.append(
            {
                "seed": seed,
                "wall_seconds": wall,
                "seconds": computed.seconds,
                "models": computed.models,
                "members": computed.members,
                "split_half_spearman": computed.split_half_spearman,
                "summary": computed.summary,
            }
        )
        print(f"  {wall:.0f} s; split-half Spearman {_corr(computed.split_half_spearman)}", flush=True)
    common, first, second = np.intersect1d(estimates[0].indices, estimates[1].indices, return_indices=True)
    a, b = np.asarray(estimates[0].values, float)[first], np.asarray(estimates[1].values, float)[second]
    finite = np.isfinite(a) & np.isfinite(b)
    rho = spearman(a[finite], b[finite])
    print(f"  {workload}: Spearman between the two estimates {_corr(rho)} over {int(finite.sum())} members", flush=True)
    return {
        "date": meta["date"],
        "command": meta["command"],
        "train": {"epochs": recipe.train.epochs, "batch_size": recipe.train.batch_size, "model": recipe.model.source},
        "models": MEMSCORE_MODELS,
        "runs": runs,
        "between_runs_spearman": rho if math.isfinite(rho) else None,
        "compared": int(finite.sum()),
        "excluded_not_finite": int(len(common) - finite.sum()),
        "not_in_both": int(len(estimates[0].indices) + len(estimates[1].indices) - 2 * len(common)),
    }


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span (scores are quantised, ties are many)."""
    _, inverse, counts = np.unique(np.asarray(values, float), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse.reshape(-1)]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation with average ranks for ties (NaN when either side is constant)."""
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths (got {len(a)} and {len(b)})")
    if len(a) < 2:
        return math.nan
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator > 0 else math.nan


def save(paths: Paths, meta: dict[str, Any], rows: list[dict[str, Any]], scores: dict[str, Any]) -> None:
    """After every row, so a long benchmark that dies keeps what it measured."""
    order = {(w, s): i for i, (w, s) in enumerate((w, s) for w in WORKLOADS for s in SETTINGS)}
    rows = sorted(rows, key=lambda r: order.get((r["workload"], r["setting"]), len(order)))
    atomic_write_json(paths.results, {"meta": meta, "rows": rows, "memscore": scores})
    publish(paths, meta, rows, scores)


def publish(paths: Paths, meta: dict[str, Any], rows: list[dict[str, Any]], scores: dict[str, Any]) -> None:
    update_section(SECTION, render(meta, rows, scores), path=paths.markdown)
    if rows:
        plot(rows, paths.plot)


def _attack(audit: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    return next((m for m in (audit or {}).get("attacks", []) if m["attack"] == name), None)


def _adv_cell(metrics: dict[str, Any] | None) -> str:
    if not metrics or metrics.get("advantage") is None:
        return "n/a"
    half = (metrics["advantage_high"] - metrics["advantage_low"]) / 2
    return f"{metrics['advantage']:+.3f} ±{half:.3f}"


def _num(metrics: dict[str, Any] | None, key: str, spec: str = ".3f") -> str:
    value = (metrics or {}).get(key)
    return "n/a" if value is None else format(value, spec)


def _gated(result: dict[str, Any]) -> tuple[str | None, float | None]:
    """The gated figure: the deciding attack and its advantage on the pruned model (max over the gated attacks)."""
    name = result.get("deciding_attack")
    metrics = _attack(result.get("pruned"), name) if name else None
    return name, (metrics or {}).get("advantage")


def _low_fpr_cell(audit: dict[str, Any] | None, gated: list[str], target_fpr: float = 0.01) -> str:
    """The highest TPR at the calibration threshold for `target_fpr` over the gated attacks, "*" when not resolvable."""
    rates = [
        (rate["tpr"], metrics["attack"], rate["resolvable"])
        for metrics in (audit or {}).get("attacks", [])
        if metrics["attack"] in gated
        for rate in metrics.get("calibrated", [])
        if math.isclose(rate["target_fpr"], target_fpr)
    ]
    if not rates:
        return "n/a"
    tpr, attack, resolvable = max(rates)
    return f"{tpr:.3f} ({attack}){'' if resolvable else '*'}"


def _criterion(result: dict[str, Any], name: str) -> str:
    return next((c["status"] for c in result.get("criteria", []) if c["name"] == name), "n/a")


def _gap(accuracy: dict[str, float], model: str) -> float:
    return (accuracy[f"{model}_members"] - accuracy[f"{model}_holdout"]) * 100


def render(meta: dict[str, Any], rows: list[dict[str, Any]], scores: dict[str, Any]) -> str:
    lines = [
        f"## Privacy defenses: {'digits (SMOKE RUN, not a benchmark)' if meta.get('smoke') else 'Fashion-MNIST'}, "
        f"{meta['target_sparsity']:.0%} sparsity: none vs KL vs WeMem",
        "",
        f"- Machine: {meta['machine']}; torch {meta['versions']['torch']}. Wall times come from a machine "
        "that other work may share: compare them within a workload, not to the last digit.",
    ]
    commands: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        commands.setdefault((row["command"], row["date"]), []).append(f"{row['workload']} {row['setting']}")
    for workload, entry in scores.items():
        commands.setdefault((entry["command"], entry["date"]), []).append(f"{workload} memorization scores")
    for (command, date), produced in commands.items():
        lines.append(f"- Command: `{command}` ({date}): {', '.join(produced)}")
    if rows:
        first = rows[0]
        schedules = dict.fromkeys(
            f"{r['target_sparsity']:.0%} target sparsity in {r.get('rounds', '?')} rounds × {r.get('epochs_per_round', '?')} epochs "
            f"({r.get('schedule', '?')} schedule, {r.get('scope', '?')} magnitude)"
            for r in rows
        )
        lines += [
            f"- Pruning: {' / '.join(schedules)}"
            + (" (the rows differ: see the results file)" if len(schedules) > 1 else "")
            + ". Settings differ only in the fine-tuning defense: `kl-λ` adds λ × "
            "the KL posterior-balancing term; `wemem-*` trains with restrained sliding windows (rsw), strong decay on risky "
            "samples (rmr) or both (swmr), from K-model memorization scores.",
            "- Base models (the victim's and every shadow's) and memorization scores come from one content-addressed cache "
            "shared by all settings: within a workload every setting starts from the same original model, and the gate's "
            "shadows from the same shadow originals. So the original (unpruned) model is audited only in the `none` run "
            "(`gate.audit_original = false` for the others, to save time); its figures hold for every setting.",
            f"- Every gate: every default attack ({', '.join(first['gate']['gated_attacks'])}), balanced evaluation "
            "(members vs holdout), 95% bootstrap intervals. Advantage = TPR − FPR at the attack's threshold (from shadow data; "
            "RMIA's and LiRA's from the auditor split where the row has them); the gated advantage is the maximum over the "
            "attacks. TPR@1% FPR is measured at each attack's calibration-set threshold (the highest over the gated attacks; "
            "`*`: not resolvable at this size, so the low-FPR criterion is reported, not gated). Rows without RMIA columns "
            "were measured before RMIA and LiRA joined the gate.",
        ]
        lines += [f"- Reduced for time ({w}): {text}" for w, text in _reductions(rows, bool(meta.get("smoke"))).items()]
    lines.append("")
    for workload in dict.fromkeys(r["workload"] for r in rows):
        lines += _table(workload, [r for r in rows if r["workload"] == workload])
    lines += findings(rows)
    lines += _memscore_lines(scores)
    return "\n".join(lines) + "\n"


# What 0 means for the gate settings where it is a mode, not a number.
_ZERO_MEANS = {"eval_size": "0: every balanced member/holdout pair", "attack_train_size": "0: all shadow samples"}


def _reductions(rows: list[dict[str, Any]], smoke: bool) -> dict[str, str]:
    """Each workload's gate settings below the gate's own defaults, and its splits against the `gate` benchmark's."""
    default = GatePolicy().to_dict()
    out: dict[str, str] = {}
    for workload in dict.fromkeys(r["workload"] for r in rows):
        mine = [r for r in rows if r["workload"] == workload]
        changes: dict[str, list[str]] = {}
        for row in mine:
            settings = row["gate"]["settings"]
            for key in ("shadows", "eval_size", "attack_train_size", "bootstrap", "sensitivity_samples"):
                if key in settings and settings[key] != default.get(key):
                    note = f"`gate.{key} = {settings[key]}` (default {_ZERO_MEANS.get(key, default[key]) if default[key] == 0 else default[key]})"
                    changes.setdefault(note, []).append(row["setting"])
        parts = [note + ("" if len(used) == len(mine) else f" in {', '.join(used)}") for note, used in changes.items()]
        sizes, train = mine[0]["split_sizes"], mine[0]["train"]
        text = f"splits (members/dev/holdout/shadow pool) {'/'.join(str(v) for v in sizes.values())}"
        full = {key: GATE_WORKLOADS.get(workload, {}).get(f"data.{key}") for key in sizes}
        if not smoke and all(full.values()) and any(sizes[k] < full[k] for k in sizes):
            text += f" (the `gate` section's {workload} uses {'/'.join(str(v) for v in full.values())})"
        parts.append(f"{text}; base training {train['epochs']} epochs at batch {train['batch_size']}")
        out[workload] = "; ".join(parts) + "."
    return out


def _table(workload: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"### {workload}",
        "",
        "| setting | test acc (original → pruned) | SAMIA adv ±95% | SAMIA AUC | RMIA adv ±95% | RMIA AUC "
        "| TPR@1% FPR, calibrated (attack) | gated adv (attack) | low-FPR criterion | verdict | prune s | gate s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for row in rows:
        original = row["gate"].get("original")
        if original:
            samia = _attack(original, "samia")
            gated_attacks = row["gate"]["gated_attacks"]
            measured = [m for m in original["attacks"] if m["attack"] in gated_attacks and m.get("advantage") is not None]
            best = max(measured, key=lambda m: m["advantage"], default=None)
            gated = f"{best['advantage']:+.3f} ({best['attack']})" if best else "n/a"
            rmia = _attack(original, "rmia")
            lines.append(
                f"| original (unpruned; audited in the {row['setting']} run) | {row['accuracy']['original_holdout']:.2%} | "
                f"{_adv_cell(samia)} | {_num(samia, 'auc')} | {_adv_cell(rmia)} | {_num(rmia, 'auc')} | "
                f"{_low_fpr_cell(original, gated_attacks)} | {gated} | — | — | — | — |"
            )
    for row in rows:
        result, acc = row["gate"], row["accuracy"]
        samia, rmia = _attack(result.get("pruned"), "samia"), _attack(result.get("pruned"), "rmia")
        name, value = _gated(result)
        gated = "n/a" if value is None else f"{value:+.3f} ({name})"
        lines.append(
            f"| {row['setting']} | {acc['original_holdout']:.2%} → {acc['pruned_holdout']:.2%} | {_adv_cell(samia)} | "
            f"{_num(samia, 'auc')} | {_adv_cell(rmia)} | {_num(rmia, 'auc')} | "
            f"{_low_fpr_cell(result.get('pruned'), result['gated_attacks'])} | {gated} | {_criterion(result, 'tpr_at_fpr')} | "
            f"{result['verdict']} | {row['prune_seconds']:.0f} | {row['gate_seconds']:.0f} |"
        )
    stages = [
        f"{row['setting']} " + " + ".join(f"{stage} {seconds:.0f}" for stage, seconds in row["gate"]["seconds"].items() if stage != "total")
        for row in rows
    ]
    lines += ["", f"- Gate time by stage (s): {'; '.join(stages)}."]
    lines += _cache_notes(rows)
    silent = [row["setting"] for row in rows if _no_signal(_attack(row["gate"].get("pruned"), "samia"))]
    if silent:
        lines.append(
            f"- No signal: SAMIA's shadow-chosen threshold calls every evaluation sample the same side in {', '.join(silent)} "
            "(what it learned on the shadows does not transfer to the victim), so its advantage there is 0 by construction; "
            "its AUC, which needs no threshold, still shows whether the scores separate members."
        )
    failed = [row for row in rows if not row["gate"].get("pruned")]
    lines += [f"- {row['setting']}: the gate gave no figures: {row['gate']['reason']}" for row in failed]
    lines.append("")
    described = [(row["setting"], row["defense_recorded"]) for row in rows if row.get("defense_recorded")]
    if described:
        lines += ["Defenses as the runs recorded them:", ""]
        lines += [f"- {setting}: {_describe(recorded)}" for setting, recorded in described]
        lines.append("")
    return lines


def _no_signal(metrics: dict[str, Any] | None) -> bool:
    return bool(metrics) and (metrics.get("tpr"), metrics.get("fpr")) in ((1.0, 1.0), (0.0, 0.0))


def _cache_notes(rows: list[dict[str, Any]]) -> list[str]:
    """Where `prune s` paid for a base model or the victim's memorization scores, and where the cache did."""
    trained = [
        f"{row['setting']}: {row['prune_stage_seconds'].get('base', 0):.0f} s"
        for row in rows
        if row.get("base_source") and not str(row["base_source"]).startswith("cache")
    ]
    lines = []
    if trained:
        lines.append(
            f"- `prune s` is the whole `prune` call: it includes base training only where the base model was not cached yet "
            f"({', '.join(trained)}); the other rows read it from the cache."
        )
    computed = [row["setting"] for row in rows if _memscore_hit(row) is False]
    if computed:
        lines.append(f"- The victim's memorization scores were computed in {', '.join(computed)}; other wemem rows read them from the cache.")
    return lines


def _memscore_hit(row: dict[str, Any]) -> bool | None:
    recorded = row.get("defense_recorded")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("memscores"), dict):
        return None
    return (recorded["memscores"].get("cache") or {}).get("hit")


# Bookkeeping in a recorded defense that says nothing about what the defense did.
_NOT_DESCRIBED = ("origin", "path", "key", "kind", "summary", "cache", "description")


def _describe(recorded: Any) -> str:
    """A run's recorded defense in one line: its own description if it has one, else its settings, nested in brackets."""
    if not isinstance(recorded, dict):
        return _fmt(recorded)
    if isinstance(recorded.get("description"), str):
        return recorded["description"]
    parts = []
    for key, value in recorded.items():
        if key in _NOT_DESCRIBED or value is None:
            continue
        parts.append(f"{key} ({_describe(value)})" if isinstance(value, dict) else f"{key} {_fmt(value)}")
    return ", ".join(parts)


def _compare(defended: float, none: float, resolution: float) -> str:
    if none - defended > resolution:
        return "lower"
    if defended - none > resolution:
        return "higher"
    return "not measurably different"


def findings(rows: list[dict[str, Any]]) -> list[str]:
    """Each defense against `none` on the same workload (computed, not written by hand)."""
    lines = [
        "### Does a defense lower leakage, and at what accuracy cost?",
        "",
        "A difference counts only when it exceeds the resolution of a difference of two advantages (√2 × the worst-case "
        "half-width of one 95% interval at this evaluation size). Accuracy cost = `none`'s pruned test accuracy minus the "
        "setting's, in points (positive: the defense costs accuracy). The member−holdout accuracy gap of the pruned model "
        "is shown because it is what the attacks feed on.",
        "",
    ]
    by_key = {(r["workload"], r["setting"]): r for r in rows}
    for workload in dict.fromkeys(r["workload"] for r in rows):
        none = by_key.get((workload, "none"))
        if not none or not none["gate"].get("pruned"):
            why = f"its gate gave no figures ({none['gate']['verdict']})" if none else "no `none` row yet"
            lines.append(f"- **{workload}**: nothing to compare against: {why}.")
            continue
        none_samia = _attack(none["gate"]["pruned"], "samia")
        none_name, none_gated = _gated(none["gate"])
        lowered = []
        for setting in SETTINGS:
            row = by_key.get((workload, setting))
            if setting == "none" or not row:
                continue
            if not row["gate"].get("pruned"):
                lines.append(f"- {workload} **{setting}**: not compared, its gate gave no figures ({row['gate']['verdict']}).")
                continue
            resolution = math.sqrt(2) * max(row["gate"]["resolution"], none["gate"]["resolution"])
            samia = _attack(row["gate"]["pruned"], "samia")
            name, gated = _gated(row["gate"])
            samia_text, samia_cmp = "SAMIA n/a", None
            if samia and none_samia and samia.get("advantage") is not None and none_samia.get("advantage") is not None:
                samia_cmp = _compare(samia["advantage"], none_samia["advantage"], resolution)
                samia_text = f"SAMIA advantage {samia['advantage']:+.3f} vs {none_samia['advantage']:+.3f}: **{samia_cmp}**"
                if _no_signal(samia):
                    samia_text += " (no signal: its threshold calls every sample one side)"
            gated_text = "gated advantage n/a"
            if gated is not None and none_gated is not None:
                gated_cmp = _compare(gated, none_gated, resolution)
                gated_text = f"gated advantage {gated:+.3f} ({name}) vs {none_gated:+.3f} ({none_name}): **{gated_cmp}**"
                if samia_cmp == "lower" and gated_cmp == "lower":
                    lowered.append(setting)
            cost = (none["accuracy"]["pruned_holdout"] - row["accuracy"]["pruned_holdout"]) * 100
            lines.append(
                f"- {workload} **{setting}** vs none: {samia_text}; {gated_text} (resolution ±{resolution:.3f}); accuracy cost "
                f"{cost:+.1f} pts ({row['accuracy']['pruned_holdout']:.2%} vs {none['accuracy']['pruned_holdout']:.2%}); "
                f"member−holdout gap {_gap(row['accuracy'], 'pruned'):.1f} vs {_gap(none['accuracy'], 'pruned'):.1f} pts."
            )
        compared = [s for s in SETTINGS if s != "none" and (workload, s) in by_key and by_key[(workload, s)]["gate"].get("pruned")]
        if compared:
            summary = (
                f"{', '.join(lowered)} measurably lower{'s' if len(lowered) == 1 else ''} both the SAMIA and the gated advantage"
                if lowered
                else "no defense measurably lowers both the SAMIA and the gated advantage"
            )
            lines.append(f"- **{workload}: {summary}** (of {', '.join(compared)}).")
    return lines + [""]


def _memscore_lines(scores: dict[str, Any]) -> list[str]:
    if not scores:
        return []
    lines = [
        "### Cost of memorization scores",
        "",
        f"K = {MEMSCORE_MODELS} models of the workload's architecture, each trained with the base-training settings on a "
        "random half of the members; computed twice with different seeds (the recipe's seed and seed + 1), each time in a "
        "fresh, empty cache so the time is a computation, not a cache read. The rank correlation between the two "
        "independent estimates (Spearman, tied scores given their average rank) says how reproducible the scores are; "
        "the split-half correlation is each estimate's own noise figure.",
        "",
    ]
    for workload, entry in scores.items():
        runs = entry["runs"]
        times = " and ".join(f"{r['wall_seconds']:.0f} s (seed {r['seed']})" for r in runs)
        halves = " / ".join(_corr(r["split_half_spearman"]) for r in runs)
        excluded = entry["excluded_not_finite"] + entry["not_in_both"]
        lines.append(
            f"- **{workload}**: {entry['models']} models ({entry['train']['model']}, {entry['train']['epochs']} epochs) on "
            f"{runs[0]['members']} members: {times}. Spearman between the two estimates **{_corr(entry['between_runs_spearman'])}** "
            f"over {entry['compared']} members"
            + (f" ({excluded} without a score in both left out)" if excluded else "")
            + f"; split-half Spearman within each {halves}."
        )
        for run in runs:
            lines.append(f"  - seed {run['seed']} summary: {_flat_summary(run['summary'])}")
    return lines + [""]


def _corr(value: float | None) -> str:
    """A correlation, or n/a where it is undefined (None, NaN: a constant side or too few samples)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _flat_summary(summary: Any, prefix: str = "") -> str:
    if not isinstance(summary, dict):
        return _fmt(summary)
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict):
            parts.append(_flat_summary(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key} {_fmt(value)}")
    return ", ".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 12:
        return f"[{len(value)} values]"
    return str(value)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """SAMIA advantage (with its 95% interval) against pruned test accuracy, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig = Figure(figsize=(6.5 * len(workloads), 5.4), layout="constrained")
    axes = fig.subplots(1, len(workloads), squeeze=False)[0]
    colours = {"none": "black", "kl": "tab:blue", "wemem": "tab:orange"}
    for ax, workload in zip(axes, workloads):
        mine = [r for r in rows if r["workload"] == workload]
        labelled: set[str] = set()
        for row in mine:
            samia = _attack(row["gate"].get("pruned"), "samia")
            if not samia or samia.get("advantage") is None:
                continue
            x, y = row["accuracy"]["pruned_holdout"] * 100, samia["advantage"]
            err = [[y - samia["advantage_low"]], [samia["advantage_high"] - y]]
            family = row["defense"].get("name", "none")
            label = None if family in labelled else f"pruned, defense {family}"
            labelled.add(family)
            ax.errorbar([x], [y], yerr=err, fmt="o", color=colours.get(family, "tab:green"), capsize=3, label=label)
            ax.annotate(row["setting"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            original = _attack(row["gate"].get("original"), "samia")
            if original and original.get("advantage") is not None:
                ox, oy = row["accuracy"]["original_holdout"] * 100, original["advantage"]
                oerr = [[oy - original["advantage_low"]], [original["advantage_high"] - oy]]
                ax.errorbar([ox], [oy], yerr=oerr, fmt="s", mfc="white", color="grey", capsize=3, label="original (unpruned)")
                ax.annotate("original (unpruned)", (ox, oy), textcoords="offset points", xytext=(5, -10), fontsize=8, color="grey")
        ax.axhline(mine[0]["gate"]["max_advantage"], color="red", linestyle="--", linewidth=0.8, label="gate max_advantage")
        ax.set_title(f"{workload}: {mine[0]['target_sparsity']:.0%} target sparsity")
        ax.set_xlabel("test (holdout) accuracy, %")
        ax.set_ylabel("SAMIA advantage (TPR − FPR), 95% interval")
        ax.margins(x=0.15)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


if __name__ == "__main__":
    main()
