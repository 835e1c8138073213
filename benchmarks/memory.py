"""Peak memory of `prunectl compress` on Fashion-MNIST when the evaluation set doubles.

Issue #7 asks that evaluation and attack features run in bounded-size chunks, so that the peak
memory of `compress` stays flat (within 10%) when the evaluation set doubles. Each row is one
`prunectl compress` process (the installed CLI) with a fresh cache and its own run directory, at
`--eval-size N` and `2N` per side, everything else equal: a reduced recipe (MLP, few epochs, 2
shadows) that still runs every stage (base training, pruning, shadows, features, attacks, export,
bench) on Fashion-MNIST in minutes on 2 cores. Floors (the interpreter, torch, the dataset, the
libraries compress imports later) say where the memory goes.

How a peak is measured. Linux keeps a process's ru_maxrss across exec, and a child created by
fork or vfork starts from its parent's high-water mark, so a child of this script (which holds
torch) would report at least this script's size. Every measured command is therefore started by
a tiny stdlib-only launcher (`python -I -S`, ~10 MB) that spawns it, `wait4`s it and prints the
kernel's ru_maxrss of that child: exact (no sampling), polluted at most by the launcher's own
peak, which is reported. ru_maxrss covers waited-for descendants as a maximum, not a sum: the
onnxruntime probe that bench starts is smaller than compress, so the figure is compress's own.
This script also polls the process's VmRSS and VmHWM every 0.1 s: a cross-check, the stage in
which the peak was reached, and each stage's largest resident size (the figure that shows
whether the gate's memory grows with the evaluation set, even when an earlier stage sets the
process's peak). A peak the polls never came near was reached between the last poll and the
exit: a Python process holding torch grows by ~100 MiB while the interpreter shuts down.
Before measuring, a child that fills 512 MiB is measured while this script holds a 1 GiB
ballast: the method passes when it reports 512 MiB over the bare interpreter, not the ballast.

The gate's units run in worker processes (issue #17: one per core by default), and ru_maxrss is
the largest single process, not their sum. So the whole process tree (compress, its workers, the
bench probe) is polled too, every 0.1 s: the sum of its PSS (each shared page, torch's libraries
and the dataset in shared memory among them, divided among the processes that map it: what the
machine holds for the run) and the sum of its RSS (which counts a shared page once per process,
an upper bound). Polls can miss a short spike; the tree's figures are samples, not a kernel peak.

    .venv/bin/python benchmarks/memory.py [--eval-size 2000] [--repeats 2] [--render-only]

Results go to `benchmarks/results/memory.json` and the `memory` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import update_section  # noqa: E402
from prune import run_meta  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "memory.json"
SECTION = "memory"
PYTHON = Path(sys.executable)
PRUNECTL = PYTHON.parent / "prunectl"
MIB = 1024 * 1024
FLAT_WITHIN = 0.10
POLL_SECONDS = 0.1
INPUT_BYTES = 28 * 28 * 4  # one preprocessed Fashion-MNIST image, float32

# The reduced recipe: members and holdout above 2N per side, so that 2N class-balanced pairs
# exist; the attacks learn from 600 shadow members and 600 non-members (the default 6,000 makes
# SAMIA's training most of a 10-minute run on 2 cores, and does not depend on the evaluation size).
FLAGS = [
    "--data", "fashion-mnist", "--model", "builtin:mlp", "--epochs", "3", "--rounds", "2", "--epochs-per-round", "1",
    "--target-sparsity", "0.9", "--defense", "none", "--shadows", "2", "--max-advantage", "1", "--seed", "0",
]  # fmt: skip
ENVIRONMENT = {
    "PRUNECTL_DATA_MEMBERS": "5000",
    "PRUNECTL_DATA_DEV": "500",
    "PRUNECTL_DATA_HOLDOUT": "5000",
    "PRUNECTL_DATA_SHADOW_POOL": "10000",
    "PRUNECTL_GATE_ATTACK_TRAIN_SIZE": "600",
}

LAUNCHER = r"""
import json, os, sys
out, err, *command = sys.argv[1:]
flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
actions = [(os.POSIX_SPAWN_OPEN, 1, out, flags, 0o644), (os.POSIX_SPAWN_OPEN, 2, err, flags, 0o644)]
pid = os.posix_spawn(command[0], command, os.environ, file_actions=actions)
print(json.dumps({"pid": pid}), flush=True)
_, status, usage = os.wait4(pid, 0)
own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"exit_code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss, "launcher_hwm_kib": own}))
"""

LOAD_FLOOR = "import torch, load Fashion-MNIST"
_LOAD = "from prunectl.data import load_dataset; from prunectl.recipe import DataSpec; data = load_dataset(DataSpec(source='fashion-mnist'))"
# In compress's order: torch and prunectl at start-up, then the data, then what it imports lazily.
FLOORS: dict[str, str] = {
    "interpreter": "pass",
    "import torch": "import torch",
    LOAD_FLOOR: f"import torch; {_LOAD}",
    "... then import onnx, onnxruntime, matplotlib": (
        f"import torch, prunectl.api; {_LOAD}; "
        "import onnx, onnxruntime, matplotlib.backends.backend_agg, matplotlib.figure, exporters.bench"
    ),
}
SHUT_DOWN_FLOOR = ("import torch, then a normal exit", "import torch")
_PRINT_RSS = "; print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')), flush=True)"


def floor(code: str, *, env: dict[str, str], workdir: Path, exit_normally: bool = False) -> dict[str, float]:
    """Peak RSS of a process that runs `code`, and its resident size when done (transients freed).

    It leaves through os._exit unless `exit_normally`: a Python process holding torch grows by
    ~100 MiB while the interpreter shuts down, which belongs to no step of the work measured here.
    """
    script = code + _PRINT_RSS + ("" if exit_normally else "; import os; os._exit(0)")
    measured = measure(python_command(script), env=env, workdir=workdir, name="floor")
    if measured["exit_code"] != 0:
        raise SystemExit(f"floor {code!r} failed: {measured['stderr_tail']}")
    return {"peak_rss_mib": measured["peak_rss_mib"], "final_rss_mib": int(measured["stdout"].split()[-1]) / 1024}


def measure(command: list[str], *, env: dict[str, str], workdir: Path, name: str) -> dict[str, Any]:
    """Peak RSS of `command` run through the launcher, with its VmRSS and VmHWM polled (seconds, MiB)."""
    out, err = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    launcher = subprocess.Popen(
        [str(PYTHON), "-I", "-S", "-c", LAUNCHER, str(out), str(err), *command],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=workdir,
    )
    assert launcher.stdout is not None
    started = time.perf_counter()
    pid = json.loads(launcher.stdout.readline())["pid"]
    samples: list[tuple[float, float, float]] = []
    tree: list[tuple[float, float, float, int]] = []
    output_at = None
    while launcher.poll() is None:
        memory = _vm_kib(pid)
        if memory is not None:
            samples.append((time.perf_counter() - started, memory[0] / 1024, memory[1] / 1024))
        whole = _tree_kib(pid)
        if whole is not None:
            tree.append((time.perf_counter() - started, whole[0] / 1024, whole[1] / 1024, whole[2]))
        if output_at is None and out.exists() and out.stat().st_size:
            output_at = time.perf_counter() - started
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - started
    result = json.loads(launcher.stdout.read().strip().splitlines()[-1])
    return {
        "exit_code": result["exit_code"],
        "peak_rss_mib": result["maxrss_kib"] / 1024,
        "launcher_peak_mib": result["launcher_hwm_kib"] / 1024,
        "polled_hwm_mib": samples[-1][2] if samples else None,
        "samples": samples,  # (seconds since start, VmRSS MiB, VmHWM MiB) every POLL_SECONDS
        "tree": tree,  # (seconds since start, summed PSS MiB, summed RSS MiB, processes) of the process tree
        "wall_s": wall,
        "output_at_s": output_at,  # first output seen; compress prints its JSON (unbuffered) when its work is done
        "stdout": out.read_text(errors="replace"),
        "stderr_tail": err.read_text(errors="replace")[-2000:],
    }


def _vm_kib(pid: int) -> tuple[int, ...] | None:
    """(VmRSS, VmHWM) of a live process, None once it is gone or a zombie (its memory released)."""
    return _proc_kib(f"/proc/{pid}/status", ("VmRSS", "VmHWM"))


def _proc_kib(path: str, fields: tuple[str, ...]) -> tuple[int, ...] | None:
    """The kB values of `fields` in a /proc file of `Name: value kB` lines; None once the process is gone."""
    found: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as lines:
            for line in lines:
                name, _, rest = line.partition(":")
                if name in fields:
                    found[name] = int(rest.split()[0])
    except OSError:
        return None
    return tuple(found[name] for name in fields) if len(found) == len(fields) else None


def _tree_kib(pid: int) -> tuple[int, int, int] | None:
    """(PSS, RSS) summed over `pid` and its descendants, and how many processes; None once it is gone."""
    import psutil  # noqa: PLC0415

    try:
        processes = [psutil.Process(pid)]
        processes += processes[0].children(recursive=True)
    except psutil.Error:
        return None
    pss = rss = counted = 0
    for process in processes:
        found = _proc_kib(f"/proc/{process.pid}/smaps_rollup", ("Pss", "Rss"))
        if found is not None:
            pss, rss, counted = pss + found[0], rss + found[1], counted + 1
    return (pss, rss, counted) if counted else None


def python_command(code: str) -> list[str]:
    return [str(PYTHON), "-c", code]


def validate(workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """The launcher reports a child's own peak: 512 MiB over the bare interpreter, not this script's ballast."""
    ballast = b"\x01" * (1024 * MIB)  # touched pages: RSS of this process, which a fork-polluted figure would show
    try:
        bare = measure(python_command("pass"), env=env, workdir=workdir, name="validate-bare")
        filled = measure(python_command("block = b'\\x01' * (512 << 20)"), env=env, workdir=workdir, name="validate-512")
    finally:
        del ballast
    excess = filled["peak_rss_mib"] - bare["peak_rss_mib"]
    return {
        "ballast_mib": 1024,
        "bare_mib": bare["peak_rss_mib"],
        "filled_mib": filled["peak_rss_mib"],
        "excess_mib": excess,
        "expected_excess_mib": 512,
        "passed": abs(excess - 512) < 16,
    }


def compress(eval_size: int, workdir: Path, env: dict[str, str], repeat: int) -> dict[str, Any]:
    name = f"compress-{eval_size}-{repeat}"
    run_dir, cache = workdir / name, workdir / f"cache-{name}"
    command = [str(PRUNECTL), "compress", *FLAGS, "--eval-size", str(eval_size), "--cache-dir", str(cache), "--out", str(run_dir), "--json"]
    measured = measure(command, env=env | {"PYTHONUNBUFFERED": "1"}, workdir=workdir, name=name)
    row: dict[str, Any] = {"eval_size": eval_size, "repeat": repeat}
    row |= {k: v for k, v in measured.items() if k not in ("stdout", "samples", "tree")}
    tree = measured["tree"]
    if tree:
        row["tree_peak_pss_mib"] = max(pss for _, pss, _, _ in tree)
        row["tree_peak_rss_mib"] = max(rss for _, _, rss, _ in tree)
        row["tree_max_processes"] = max(n for *_, n in tree)
    report = run_dir / "gate" / "report.json"
    if report.is_file():
        evaluation = json.loads(report.read_text())["evaluation"]
        row["evaluated"] = [evaluation["n_members"], evaluation["n_nonmembers"]]
    stdout = measured["stdout"]
    samples = measured["samples"]
    if "{" in stdout:
        result = json.loads(stdout[stdout.index("{") :])
        row["verdict"] = result["gate"]["verdict"]
        row["stages"] = result["seconds"]
        spans = stage_spans(measured["wall_s"], result["seconds"], measured["output_at_s"])
        row["stage_max_rss_mib"] = {
            stage: max((rss for t, rss, _ in samples if start <= t < end), default=None) for stage, start, end in spans
        }
        row["stage_max_tree_pss_mib"] = {
            stage: max((pss for t, pss, _, _ in tree if start <= t < end), default=None) for stage, start, end in spans
        }
        row["peak_stage"] = peak_stage(samples, spans, measured["peak_rss_mib"]) or "after the last sample (exit)"
    row["rss_timeline"] = [(round(t, 1), round(rss)) for t, rss, _ in samples[:: max(1, len(samples) // 300)]]
    row["tree_timeline"] = [(round(t, 1), round(pss), n) for t, pss, _, n in tree[:: max(1, len(tree) // 300)]]
    if measured["exit_code"] not in (0, 1):
        row["error"] = measured["stderr_tail"].strip().splitlines()[-1] if measured["stderr_tail"].strip() else "no output"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return row


def stage_spans(wall: float, seconds: dict[str, float], output_at: float | None) -> list[tuple[str, float, float]]:
    """(stage, start, end) in seconds since the process started, stages laid end to end.

    compress's own clock covers loading the data and checking the recipe, then prune, gate,
    export and bench; before it come interpreter start-up and imports, after it (from its JSON
    output on) the interpreter's shut-down.
    """
    done = output_at if output_at is not None else wall
    staged = [(name, seconds[name]) for name in ("prune", "gate", "export", "bench") if name in seconds]
    lengths = [
        ("start-up and imports", max(0.0, done - seconds["total"])),
        ("load data and check", seconds["total"] - sum(length for _, length in staged)),
        *staged,
        ("shut-down", max(0.0, wall - done)),
    ]
    spans, clock = [], 0.0
    for name, length in lengths:
        spans.append((name, clock, clock + length))
        clock += length
    return spans


def peak_stage(samples: list[tuple[float, float, float]], spans: list[tuple[str, float, float]], peak: float) -> str | None:
    """The stage during which the polled high-water mark first came within 1% of the kernel's peak.

    None when no sample came that close: the peak was reached between the last sample and the
    exit (the interpreter's shut-down, typically).
    """
    when = next((t for t, _, hwm in samples if hwm >= 0.99 * peak), None)
    if when is None:
        return None
    return next((name for name, start, end in spans if start <= when < end), spans[-1][0])


def render(meta: dict[str, Any], data: dict[str, Any]) -> str:
    rows, floors, check = data["rows"], data["floors"], data["validation"]
    finished = [row for row in rows if "error" not in row and row.get("stage_max_rss_mib")]
    lines = [
        "## Peak memory of compress: Fashion-MNIST, evaluation set N and 2N per side",
        "",
        f"- Date: {meta['date']}; machine: {meta['machine']}; torch {meta['versions']['torch']}; "
        f"{meta['wall_s'] / 60:.0f} min for everything below.",
        f"- Command: `{meta['command'].strip()}`. Each compress row is one `prunectl compress {' '.join(FLAGS)} --eval-size E` "
        f"process with {' '.join(f'{k}={v}' for k, v in ENVIRONMENT.items())}, a fresh `--cache-dir` and its own `--out`: "
        "every stage runs (base training, 2 pruning rounds, 2 shadow replicas, features and all six attacks on the original "
        "and the pruned model, export, bench).",
        "- Peak RSS: the kernel's ru_maxrss of the compress process, read by a stdlib-only launcher through `wait4` "
        "(the script's docstring says why not from the script itself). VmRSS and VmHWM polled every 0.1 s date the peak "
        "and give each stage's largest resident size.",
        "- Process tree: compress with the gate's worker processes (one per core by default) and the bench probe, polled "
        "every 0.1 s: the largest sum of their PSS (shared pages divided among the processes that map them: what the "
        "machine holds for the run) and of their RSS (shared pages counted once per process: an upper bound).",
        "",
        "| eval size per side | evaluated (members + non-members) | exit | verdict | peak RSS MiB | polled VmHWM MiB "
        "| peak reached during | tree PSS MiB | tree RSS MiB | processes | wall s |",
        "|---:|---|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        evaluated = " + ".join(str(v) for v in row.get("evaluated", [])) or "-"
        polled = f"{row['polled_hwm_mib']:.0f}" if row.get("polled_hwm_mib") else "-"
        tree = " | ".join(f"{row[k]:.0f}" if row.get(k) is not None else "-" for k in ("tree_peak_pss_mib", "tree_peak_rss_mib", "tree_max_processes"))
        lines.append(
            f"| {row['eval_size']} | {evaluated} | {row['exit_code']} | {row.get('verdict', row.get('error', '-'))} "
            f"| {row['peak_rss_mib']:.0f} | {polled} | {row.get('peak_stage') or '-'} | {tree} | {row['wall_s']:.0f} |"
        )
    if finished:
        stages = list(finished[0]["stage_max_rss_mib"])
        lines += ["", "Largest polled VmRSS (MiB) per stage:", "", "| stage | " + " | ".join(column(r, finished) for r in finished) + " |",
                  "|---|" + "---:|" * len(finished)]  # fmt: skip
        for stage in stages:
            cells = [r["stage_max_rss_mib"].get(stage) for r in finished]
            lines.append(f"| {stage} | " + " | ".join(f"{c:.0f}" if c is not None else "-" for c in cells) + " |")
        if all(r.get("stage_max_tree_pss_mib") for r in finished):
            lines += ["", "Largest polled PSS of the process tree (MiB) per stage:", "",
                      "| stage | " + " | ".join(column(r, finished) for r in finished) + " |", "|---|" + "---:|" * len(finished)]  # fmt: skip
            for stage in stages:
                cells = [r["stage_max_tree_pss_mib"].get(stage) for r in finished]
                lines.append(f"| {stage} | " + " | ".join(f"{c:.0f}" if c is not None else "-" for c in cells) + " |")
    sizes = sorted({r["eval_size"] for r in finished})
    if len(sizes) >= 2:
        n, n2 = sizes[0], sizes[-1]
        peak = {e: max(r["peak_rss_mib"] for r in finished if r["eval_size"] == e) for e in (n, n2)}
        gate = {e: max(r["stage_max_rss_mib"]["gate"] for r in finished if r["eval_size"] == e) for e in (n, n2)}
        extra_inputs = (n2 - n) * 2  # members and non-members
        lines += [
            "",
            f"2N = {n2} against N = {n} per side: process peak {peak[n2]:.0f} / {peak[n]:.0f} MiB = **{ratio_text(peak[n2] / peak[n])}**; "
            f"largest resident size during the gate {gate[n2]:.0f} / {gate[n]:.0f} MiB = **{ratio_text(gate[n2] / gate[n])}** "
            f"(the goal: within ±{FLAT_WITHIN:.0%}).",
            f"For scale: the {extra_inputs:,} extra evaluated samples are {extra_inputs * INPUT_BYTES / MIB:.0f} MiB of inputs; "
            f"gathered whole with their 10 perturbed copies for the sensitivities they would add "
            f"{extra_inputs * INPUT_BYTES * 11 / MIB:.0f} MiB per audited model. Chunked, a forward pass holds at most 256 inputs "
            f"({256 * INPUT_BYTES / MIB:.1f} MiB) and only the per-sample features and scores (a few doubles each) grow.",
        ]
        if all(r.get("tree_peak_pss_mib") for r in finished):
            tree = {e: max(r["tree_peak_pss_mib"] for r in finished if r["eval_size"] == e) for e in (n, n2)}
            lines.append(f"The process tree's peak PSS: {tree[n2]:.0f} / {tree[n]:.0f} MiB = **{ratio_text(tree[n2] / tree[n])}**.")
        loading = floors.get(LOAD_FLOOR)
        if loading and all(r.get("peak_stage") == "load data and check" for r in finished):
            later = max(max(v for k, v in r["stage_max_rss_mib"].items() if k not in ("start-up and imports", "load data and check")) for r in finished)
            lines.append(
                f"Every run reaches its peak while loading the data, which a process that only imports torch and loads "
                f"Fashion-MNIST already does ({loading['peak_rss_mib']:.0f} MiB peak, {loading['final_rss_mib']:.0f} MiB resident "
                f"once loaded: the loader's transient copies of the 70,000 images); after loading no stage rose above "
                f"{later:.0f} MiB in any run."
            )
    lines += ["", "Where the memory goes: processes that do only this, measured the same way (resident: VmRSS when done, "
              "transients freed):", "", "| process | peak RSS MiB | resident MiB |", "|---|---:|---:|"]  # fmt: skip
    for name, mib in floors.items():
        lines.append(f"| {name} | {mib['peak_rss_mib']:.0f} | {mib['final_rss_mib']:.0f} |")
    lines += [
        "",
        f"Method check: with the script holding a {check['ballast_mib']} MiB ballast, a child filling 512 MiB measured "
        f"{check['excess_mib']:.0f} MiB above the bare interpreter ({check['bare_mib']:.0f} MiB): "
        f"{'passed' if check['passed'] else 'FAILED'}. The launcher itself peaks at "
        f"{max((r['launcher_peak_mib'] for r in rows), default=0):.0f} MiB, the most it can add to a figure.",
    ]
    return "\n".join(lines)


def column(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    repeated = any(r["repeat"] for r in rows)
    return f"E = {row['eval_size']}" + (f" (run {row['repeat'] + 1})" if repeated else "")


def ratio_text(ratio: float) -> str:
    return f"{ratio:.3f}, {'flat' if abs(ratio - 1) <= FLAT_WITHIN else 'NOT flat'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-size", type=int, default=2000, help="N: evaluation samples per side; 2N is measured too")
    parser.add_argument("--repeats", type=int, default=2, help="compress processes per evaluation size (run to run spread)")
    parser.add_argument("--render-only", action="store_true", help="rewrite BENCHMARKS.md from the last results")
    args = parser.parse_args()
    if args.render_only:
        saved = json.loads(RESULTS.read_text())
        update_section(SECTION, render(saved["meta"], saved))
        return
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNECTL_")} | ENVIRONMENT
    workdir = Path(tempfile.mkdtemp(prefix="prunectl-bench-memory-"))
    try:
        validation = validate(workdir, env)
        print(json.dumps({"validation": validation}), flush=True)
        if not validation["passed"]:
            raise SystemExit(f"the measurement method failed its check: {validation}")
        floors = {name: floor(code, env=env, workdir=workdir) for name, code in FLOORS.items()}
        floors[SHUT_DOWN_FLOOR[0]] = floor(SHUT_DOWN_FLOOR[1], env=env, workdir=workdir, exit_normally=True)
        print(json.dumps({"floors": floors}), flush=True)
        rows = []
        for repeat in range(args.repeats):
            for eval_size in (args.eval_size, 2 * args.eval_size):
                row = compress(eval_size, workdir, env, repeat)
                print(json.dumps({k: v for k, v in row.items() if k not in ("rss_timeline", "tree_timeline", "stderr_tail")}), flush=True)
                rows.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta = run_meta(eval_sizes=[args.eval_size, 2 * args.eval_size], flags=FLAGS, environment=ENVIRONMENT)
    meta["wall_s"] = time.perf_counter() - started
    data = {"meta": meta, "validation": validation, "floors": floors, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    update_section(SECTION, render(meta, data))


if __name__ == "__main__":
    main()
