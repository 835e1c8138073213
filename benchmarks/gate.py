"""Privacy-gate benchmark: Fashion-MNIST at 90% sparsity, no defense, two workloads.

- `cnn`: the builtin CNN with 10k members (realistic: little overfitting).
- `leaky-mlp`: an MLP 784-256-256-10 on 2k members, trained to a large train/test gap.

For each workload it prunes to 0.9 and, as the control the paper's claim needs, "prunes" to
0.0 with the same rounds and epochs (a dense model fine-tuned exactly as long). Both runs are
gated through the product (`prunectl.api.gate`: 4 shadows re-running the recipe, every default
attack: SAMIA, the threshold family, offline RMIA and LiRA). The `null` variant gates the
pruned run again with its holdout split in two, one half claimed as members: no sample on
either side was trained on, so no attack can have signal and every criterion must pass (at
FPR 0.02, the smallest rate half the holdout resolves).
It records every attack's figures for the original and the fine-tuned model, and the gate's
wall time per stage. Results go to `benchmarks/results/gate.json` and the `gate` section of
BENCHMARKS.md.

    .venv/bin/python benchmarks/gate.py [--workloads cnn,leaky-mlp] [--variants pruned-0.9,null] [--render-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402
from prune import RECORDED_DEFAULTS, run_meta  # noqa: E402

from prunectl.api import gate, prune  # noqa: E402
from prunectl.config import resolve  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "gate.json"

WORKLOADS: dict[str, dict[str, Any]] = {
    "cnn": {
        "data.members": 10000,
        "data.dev": 2000,
        "data.holdout": 10000,
        "data.shadow_pool": 24000,
        "model.source": "builtin:cnn",
        "train.epochs": 10,
        "train.batch_size": 128,
    },
    "leaky-mlp": {
        "data.members": 2000,
        "data.dev": 500,
        "data.holdout": 2000,
        "data.shadow_pool": 5000,
        "model.source": "builtin:mlp",
        "model.widths": (256, 256),
        "train.epochs": 40,
        "train.batch_size": 64,
    },
}
VARIANTS = {"pruned-0.9": 0.9, "dense-fine-tuned": 0.0}
NULL_VARIANT = "null"
NULL_TARGET_FPR = 0.02
"""The null's evaluation holds half the holdout per side: 1% of it is under 10 false positives
(not resolvable), 2% is the smallest rate it resolves."""
TODAYS_ATTACKS = ("samia", "confidence", "loss", "entropy", "modified_entropy", "top1")
"""The gated set before offline RMIA and LiRA joined it: the goals compare against it."""


class LogProgress:
    """Stage start/end lines on stdout: a benchmark log, not a terminal."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Any]:
        started = time.perf_counter()
        print(f"  … {description}", flush=True)
        yield self
        print(f"  ✓ {description} ({time.perf_counter() - started:.0f} s)", flush=True)

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        pass

    def log(self, message: str) -> None:
        print(message, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--variants", default=",".join([*VARIANTS, NULL_VARIANT]), help="pruned-0.9, dense-fine-tuned, null")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs-per-round", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "gate")
    parser.add_argument("--render-only", action="store_true", help="rewrite BENCHMARKS.md from the last results")
    args = parser.parse_args()
    if args.render_only:
        saved = json.loads(RESULTS.read_text())
        update_section("gate", render(saved["meta"], saved["rows"]))
        return

    meta = run_meta(
        rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
    )
    previous: list[dict[str, Any]] = []
    if RESULTS.is_file():
        saved = json.loads(RESULTS.read_text())
        previous = [{"date": saved["meta"]["date"], "command": saved["meta"]["command"], **row} for row in saved["rows"]]
    chosen = args.workloads.split(",")
    variants = args.variants.split(",")
    rows = [row for row in previous if row["workload"] not in chosen or row["variant"] not in variants]
    for workload in chosen:
        flags = {
            **RECORDED_DEFAULTS,
            "name": f"bench-gate-{workload}",
            "data.source": "fashion-mnist",
            "prune.rounds": args.rounds,
            "prune.epochs_per_round": args.epochs_per_round,
            **WORKLOADS[workload],
        }
        base_checkpoint: Path | None = None
        for variant, sparsity in VARIANTS.items():
            if variant not in variants and not (variant == "pruned-0.9" and NULL_VARIANT in variants):
                continue
            recipe = resolve(env={}, flags={**flags, "prune.target_sparsity": sparsity}).recipe
            if base_checkpoint is not None:
                recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, checkpoint=str(base_checkpoint)))
            out = args.work / f"{workload}-{variant}"
            started = time.perf_counter()
            pruned = prune(recipe, out=out, overwrite=True, progress=LogProgress())
            prune_seconds = time.perf_counter() - started
            base_checkpoint = base_checkpoint or out / "base.pt"
            started = time.perf_counter()
            result = gate(out, progress=LogProgress()).result if variant in variants else None
            gate_seconds = time.perf_counter() - started
            row = {
                "workload": workload,
                "date": meta["date"],
                "command": meta["command"],
                "variant": variant,
                "target_sparsity": sparsity,
                "achieved_sparsity": pruned.sparsity["global_sparsity"],
                "accuracy": {
                    "original_members": pruned.base_member_accuracy,
                    "original_holdout": pruned.base_accuracy,
                    "tuned_members": pruned.pruned_member_accuracy,
                    "tuned_holdout": pruned.pruned_accuracy,
                },
                "split_sizes": pruned.split_sizes,
                "prune_seconds": prune_seconds,
                "gate_seconds": gate_seconds,
                "gate": result.to_dict() if result else None,
            }
            if result is not None:
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("workload", "variant", "accuracy", "gate_seconds")}), flush=True)
                print(f"  verdict {result.verdict}: {result.reason}", flush=True)
                save(meta, rows)
            if variant == "pruned-0.9" and NULL_VARIANT in variants:
                started = time.perf_counter()
                null = null_gate(out)
                rows.append({**row, "variant": NULL_VARIANT, "gate_seconds": time.perf_counter() - started, "gate": null.to_dict()})
                print(f"  null verdict {null.verdict}: {null.reason}", flush=True)
                save(meta, rows)


def null_gate(run_dir: Path) -> Any:
    """The run's gate with half its holdout claimed as members: membership carries no signal."""
    import numpy as np

    from gates.gate import run_gate
    from prunectl.cache import resolve_cache_dir
    from prunectl.rundir.load import load_run
    from prunectl.stages.gate import gate_inputs, gate_policy

    loaded = load_run(run_dir)
    inputs = gate_inputs(loaded, resolve_cache_dir(None))
    shuffled = np.random.default_rng(20261201).permutation(inputs.holdout)
    half = len(shuffled) // 2
    inputs = dataclasses.replace(inputs, members=np.sort(shuffled[:half]), holdout=np.sort(shuffled[half:]))
    policy = dataclasses.replace(gate_policy(loaded.recipe), target_fpr=NULL_TARGET_FPR)
    return run_gate(inputs, policy, LogProgress())



def save(meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """After every gated run, so a long benchmark that dies keeps what it measured."""
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    update_section("gate", render(meta, rows))


def _attack_cell(metrics: dict[str, Any] | None) -> str:
    if not metrics or metrics.get("advantage") is None:
        return "n/a"
    half = (metrics["advantage_high"] - metrics["advantage_low"]) / 2
    return f"{metrics['advantage']:+.3f} ±{half:.3f}"


def _max_advantage(audit: dict[str, Any] | None, attacks: list[str]) -> tuple[str, float]:
    figures = {m["attack"]: m["advantage"] for m in (audit or {}).get("attacks", []) if m["attack"] in attacks and m["advantage"] is not None}
    best = max(figures, key=figures.get)
    return best, figures[best]


def _walls(seconds: dict[str, float]) -> str:
    """The gate's wall time split between its units and its attacks, where the run recorded them (issue #17 on)."""
    if "units_wall" not in seconds:
        return ""
    return f" (units {seconds['units_wall']:.0f} s, attacks {seconds.get('attacks_wall', 0):.0f} s, wall)"


def render(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Privacy gate: Fashion-MNIST, 90% sparsity, no defense",
        "",
        f"- Machine: {meta['machine']}; torch {meta['versions']['torch']}. Each run below names its command and date.",
        f"- Each workload's base model is trained once; `pruned-0.9` prunes it in {meta['rounds']} rounds × "
        f"{meta['epochs_per_round']} epochs; `dense-fine-tuned` runs the same rounds at target 0.0 (no weight removed), "
        "the control for \"pruning raises leakage\". Every gate: 4 shadows re-running the recipe on halves of the shadow "
        "pool, every default attack (SAMIA, the threshold family, offline RMIA and LiRA with the shadows as reference "
        "models), thresholds from shadow data (RMIA's and LiRA's from the auditor split), balanced evaluation (members vs "
        "holdout), 95% bootstrap intervals (1000 resamples). Advantage = TPR − FPR at the attack's threshold.",
        "- Wall times come from a shared 2-core machine whose speed drifts (the same stage of the same workload has "
        "taken up to 1.5× longer in one run than in another): compare stages within a run. Since issue #17 the gate's "
        "units (shadow pipelines with their readings, victim readings, attack trainings) run side by side on a pool of "
        "workers, one per core, each at one intra-op thread: a stage's seconds are work summed over its units and add up "
        "to more than the gate's wall time, which `units` and `attacks` (wall) split. One content cache serves a run of "
        "this script, so a workload's later variants find the shadows' base models its first variant trained and their "
        "shadows only prune and fine-tune.",
        "",
    ]
    for row in rows:
        result = row["gate"]
        acc = row["accuracy"]
        original, tuned = result.get("original"), result.get("pruned")
        lines += [
            f"### {row['workload']} — {row['variant']}",
            "",
            f"- Command: `{row.get('command', meta['command'])}` ({row.get('date', meta['date'])})",
            f"- Splits (members/dev/holdout/shadow pool): {'/'.join(str(v) for v in row['split_sizes'].values())}; "
            f"achieved sparsity {row['achieved_sparsity']:.4f}",
            f"- Accuracy members/holdout: original {acc['original_members']:.2%}/{acc['original_holdout']:.2%} "
            f"(gap {(acc['original_members'] - acc['original_holdout']) * 100:.1f} pts) → {row['variant']} "
            f"{acc['tuned_members']:.2%}/{acc['tuned_holdout']:.2%} (gap {(acc['tuned_members'] - acc['tuned_holdout']) * 100:.1f} pts)",
            f"- Gate verdict at max_advantage {result['max_advantage']}: **{result['verdict']}** ({result['reason']}); "
            f"evaluation {result['evaluation']['n_members']} per side, resolution ±{result['resolution']:.3f}",
            f"- Wall time: prune {row['prune_seconds']:.0f} s; gate {row['gate_seconds']:.0f} s{_walls(result['seconds'])}; "
            f"{'work summed over the units: ' if 'units_wall' in result['seconds'] else ''}shadows "
            f"{result['seconds'].get('shadows', 0):.0f} s, features {result['seconds'].get('features', 0):.0f} s, "
            f"attack fit and scoring {result['seconds'].get('attacks', 0):.0f} s",
            f"- Criteria: " + "; ".join(f"{c['name']} **{c['status']}**" for c in result.get("criteria", []))
            + f"; calibration set {result.get('calibration', {}).get('size', 'n/a')}, auditor split "
            f"{result.get('calibration', {}).get('threshold_pairs', 'n/a')} pairs; ε estimate (pruned) {_fmt(result.get('epsilon'), '.2f')}",
            f"- Reference stage (signals in the units, then RMIA/LiRA): {result['seconds'].get('references', 0):.1f} s = "
            f"{100 * result['seconds'].get('references', 0) / max(result['seconds'].get('total', 1), 1e-9):.1f}% of the gate's wall time"
            + (" (work, not wall: the units ran side by side)" if "units_wall" in result["seconds"] else ""),
            "",
            "| attack | original: adv ±95% | AUC | TPR@1%FPR | "
            f"{row['variant']}: adv ±95% | best adv | AUC | TPR@1%FPR [95% CI] (achieved FPR) | TPR@0.1%FPR (achieved FPR) | ε |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for metrics in (tuned or {}).get("attacks", []):
            name = metrics["attack"]
            before = next((m for m in (original or {}).get("attacks", []) if m["attack"] == name), None)
            lines.append(
                f"| {name} | {_attack_cell(before)} | {_num(before, 'auc')} | {_rate(before, 0.01, short=True)} | "
                f"{_attack_cell(metrics)} | {_num(metrics, 'best_advantage')} | {_num(metrics, 'auc')} | "
                f"{_rate(metrics, 0.01)} | {_rate(metrics, 0.001)} | {_num(metrics, 'epsilon', '.2f')} |"
            )
        silent = [
            f"{m['attack']} ({model})"
            for model, audit in (("original", original), (row["variant"], tuned))
            for m in (audit or {}).get("attacks", [])
            if (m.get("tpr"), m.get("fpr")) in ((1.0, 1.0), (0.0, 0.0))
        ]
        if silent:
            lines += [
                "",
                f"- No signal: the shadow-chosen threshold of {', '.join(silent)} calls every evaluation sample the same "
                "side (the attack learned nothing usable from the shadows), so its advantage is 0 by construction.",
            ]
        lines.append("")
    lines += findings(rows)
    return "\n".join(lines) + "\n"


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _calibrated(metrics: dict[str, Any] | None, fpr: float) -> dict[str, Any] | None:
    return next((r for r in (metrics or {}).get("calibrated", []) if math.isclose(r["target_fpr"], fpr)), None)


def _rate(metrics: dict[str, Any] | None, fpr: float, short: bool = False) -> str:
    """TPR at the calibration threshold for `fpr` (\"*\": not resolvable), or the evaluation's best for older rows."""
    rate = _calibrated(metrics, fpr)
    if rate is None or rate.get("tpr") is None:
        key = "tpr_at_1pct_fpr" if fpr == 0.01 else "tpr_at_01pct_fpr"
        return f"{_num(metrics, key)} (eval ROC)"
    mark = "" if rate["resolvable"] else "*"
    if short:
        return f"{rate['tpr']:.3f}{mark}"
    ci = f" [{rate['tpr_low']:.3f}, {rate['tpr_high']:.3f}]" if fpr == 0.01 else ""
    return f"{rate['tpr']:.3f}{mark}{ci} ({rate['fpr']:.4f})"


def _num(metrics: dict[str, Any] | None, key: str, spec: str = ".3f") -> str:
    value = (metrics or {}).get(key)
    return "n/a" if value is None else format(value, spec)


def findings(rows: list[dict[str, Any]]) -> list[str]:
    """The paper's two claims, checked against these numbers (computed, not written by hand)."""
    lines = [
        "### The paper's findings on this data",
        "",
        "A difference counts only when it exceeds the resolution of a difference of two advantages "
        "(√2 × the worst-case half-width of one 95% interval at this evaluation size).",
        "",
    ]
    by_key = {(r["workload"], r["variant"]): r for r in rows}
    for workload in dict.fromkeys(r["workload"] for r in rows):
        pruned, dense = by_key.get((workload, "pruned-0.9")), by_key.get((workload, "dense-fine-tuned"))
        if not pruned or not pruned["gate"].get("pruned"):
            continue
        attacks = pruned["gate"]["gated_attacks"]
        # Two advantages each carry ±resolution; their difference carries up to √2 × that.
        resolution = pruned["gate"]["resolution"] * math.sqrt(2)
        name_o, adv_o = _max_advantage(pruned["gate"]["original"], attacks)
        name_p, adv_p = _max_advantage(pruned["gate"]["pruned"], attacks)
        verdict = "raises" if adv_p - adv_o > resolution else ("lowers" if adv_o - adv_p > resolution else "does not measurably change")
        text = (
            f"- **{workload}: pruning {verdict} leakage** over the original: strongest attack {name_o} {adv_o:+.3f} → "
            f"{name_p} {adv_p:+.3f} (resolution ±{resolution:.3f})"
        )
        lines.append(text + ".")
        if dense and dense["gate"].get("pruned"):
            name_d, adv_d = _max_advantage(dense["gate"]["pruned"], attacks)
            versus = "more than" if adv_p - adv_d > resolution else ("less than" if adv_d - adv_p > resolution else "as much as")
            lines.append(
                f"- **{workload}: the pruned model leaks {versus} a dense model fine-tuned for the same epochs**: "
                f"{name_p} {adv_p:+.3f} vs {name_d} {adv_d:+.3f} (resolution ±{resolution:.3f})."
            )
        threshold_attacks = [a for a in attacks if a != "samia"]
        if "samia" in attacks and threshold_attacks:
            samia = next(m for m in pruned["gate"]["pruned"]["attacks"] if m["attack"] == "samia")
            best_name, best_adv = _max_advantage(pruned["gate"]["pruned"], threshold_attacks)
            gap = samia["advantage"] - best_adv
            claim = "holds" if gap >= 0 else ("holds within noise" if gap >= -resolution else "does not hold")
            lines.append(
                f"- **{workload}: \"SAMIA is at least as strong as the best threshold attack\" {claim}** on the pruned model: "
                f"SAMIA {samia['advantage']:+.3f} (AUC {samia['auc']:.3f}) vs {best_name} {best_adv:+.3f} (difference "
                f"{gap:+.3f}, resolution ±{resolution:.3f})."
            )
    lines += goals(rows)
    return lines + [""]


def _best_rate(audit: dict[str, Any] | None, attacks: tuple[str, ...] | list[str], fpr: float) -> tuple[str, float]:
    figures = {m["attack"]: (_calibrated(m, fpr) or {}).get("tpr") for m in (audit or {}).get("attacks", []) if m["attack"] in attacks}
    figures = {k: v for k, v in figures.items() if v is not None}
    best = max(figures, key=figures.get)
    return best, figures[best]


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """Issue #15's goals, computed from the rows (the pruned model of each workload, same 4 shadows, same run)."""
    lines = ["", "### RMIA, LiRA and the low-FPR criterion against the attacks gated before them", ""]
    for row in rows:
        audit = (row.get("gate") or {}).get("pruned")
        if not audit or not any(m.get("calibrated") for m in audit["attacks"]):
            continue
        result = row["gate"]
        every = result["gated_attacks"]
        today = [a for a in TODAYS_ATTACKS if a in every]
        name_all, tpr_all = _best_rate(audit, every, 0.01)
        name_old, tpr_old = _best_rate(audit, today, 0.01)
        adv_all = _max_advantage(audit, every)
        adv_old = _max_advantage(audit, today)
        ratio = tpr_all / tpr_old if tpr_old else math.inf
        resolution = result["resolution"]
        lines.append(
            f"- **{row['workload']} — {row['variant']}**: TPR@1%FPR (calibration threshold) strongest {name_all} {tpr_all:.3f} "
            f"vs today's best {name_old} {tpr_old:.3f} ({ratio:.1f}×); gated advantage {adv_all[0]} {adv_all[1]:+.3f} vs today's "
            f"{adv_old[0]} {adv_old[1]:+.3f} (difference {adv_all[1] - adv_old[1]:+.3f}, resolution ±{resolution:.3f}); verdict "
            f"**{result['verdict']}** ({'; '.join(c['name'] + ' ' + c['status'] for c in result.get('criteria', []))})."
        )
    return lines


if __name__ == "__main__":
    main()
