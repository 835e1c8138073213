"""Where the gate's units run (`gates.executor`, `prunectl.executors`): never a different figure.

One worker, two worker processes and a Ray instance give bit-identical gate metrics; a worker
that dies fails the gate closed; Ctrl-C during a parallel gate stops every worker and ends in
one line; a Ray that is missing or unreachable is refused with exit 2 before any work.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from conftest import make_tiny_recipe
from prunectl.api import Execution, gate, prune
from prunectl.cache import training_inputs
from prunectl.executors import ExecutorError, check_execution, make_executor
from prunectl.faults import FAULT_ENV

pytestmark = pytest.mark.slow

GATE = {"gate__shadows": 2, "gate__bootstrap": 200}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("executors") / "run"
    prune(make_tiny_recipe(**GATE), out=out)
    return out


@pytest.fixture(scope="module")
def one_worker(run_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return gate(run_dir, cache_dir=tmp_path_factory.mktemp("cache1"), execution=Execution(workers=1)).result


def _figures(result) -> dict:
    """Everything measured: the verdict, every attack's figures on both models, the shadows' accuracy."""
    figures = result.to_dict()
    return {key: figures[key] for key in ("verdict", "reason", "gated_value", "pruned", "original")} | {
        "shadows": [(s.index, s.base_accuracy, s.pruned_accuracy) for s in result.shadows]
    }


@pytest.fixture(scope="module")
def two_workers(run_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return gate(run_dir, cache_dir=tmp_path_factory.mktemp("cache2"), execution=Execution(workers=2)).result


def test_two_worker_processes_give_the_gate_bit_identical_figures(one_worker, two_workers):
    assert _figures(two_workers) == _figures(one_worker)
    assert two_workers.settings["execution"] == {"executor": "local", "workers": 2, "unit_threads": 1, "start_method": "spawn"}
    assert one_worker.settings["execution"]["workers"] == 1


def test_the_report_times_every_unit_and_names_the_process_that_ran_it(one_worker, two_workers):
    """`report.json`'s timeline: one entry per unit (each shadow pipeline, each victim reading,
    each attack trained on shadow features), where it ran and when, within the gate's own time."""
    timeline = two_workers.to_dict()["timeline"]
    assert [t["unit"] for t in timeline if t["stage"] == "models"] == ["shadow 0", "shadow 1", "victim original", "victim pruned"]
    attacks = [t["unit"] for t in timeline if t["stage"] == "attacks"]
    assert {"samia (pruned)", "samia (original)"} <= set(attacks)
    assert all(0 <= t["start"] and t["seconds"] > 0 and t["start"] + t["seconds"] <= two_workers.seconds["total"] for t in timeline)
    this_process = f"{socket.gethostname()}:{os.getpid()}"
    assert len({t["worker"] for t in timeline}) == 2 and this_process not in {t["worker"] for t in timeline}
    assert {t["worker"] for t in one_worker.to_dict()["timeline"]} == {this_process}
    assert [(t["stage"], t["unit"]) for t in one_worker.to_dict()["timeline"]] == [(t["stage"], t["unit"]) for t in timeline]


def test_the_manifest_records_how_the_gate_ran_and_the_victims_threads(run_dir, one_worker):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["gate"]["execution"]["unit_threads"] == 1
    assert manifest["intra_op_threads"] >= 1


def test_the_cache_key_holds_the_thread_count_models_were_trained_at():
    recipe = make_tiny_recipe()
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = training_inputs(recipe, x, y, [0, 1], seed=0, device="cpu")
        torch.set_num_threads(2)
        two = training_inputs(recipe, x, y, [0, 1], seed=0, device="cpu")
    finally:
        torch.set_num_threads(previous)
    assert one["intra_op_threads"] == 1 and two["intra_op_threads"] == 2


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, "PRUNECTL_WORKERS")} | env
    return subprocess.run([sys.executable, "-m", "prunectl.cli", *args], capture_output=True, text=True, env=environment, timeout=600)


def test_a_worker_killed_mid_gate_fails_the_gate_closed(run_dir, tmp_path):
    """A real SIGKILL of a worker process (the OOM killer's signal): verdict error, exit 1, no retry."""
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    done = _cli(["gate", str(copy), "--workers", "2", "--cache-dir", str(tmp_path / "cache")], **{FAULT_ENV: "kill@shadow-pipeline"})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "NOT PASSED (error)" in done.stderr
    report = json.loads((copy / "gate" / "report.json").read_text())
    assert report["verdict"] == "error"
    assert "worker process died (signal SIGKILL" in report["reason"] and "--workers" in report["reason"], report["reason"]
    assert json.loads((copy / "manifest.json").read_text())["gate"]["passed"] is False


def test_ctrl_c_during_a_parallel_gate_stops_every_worker_in_one_line(run_dir, tmp_path):
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    environment = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, "PRUNECTL_WORKERS")}
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # as a terminal's foreground job has it (see test_crash_safety)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "prunectl.cli", "gate", str(copy), "--workers", "2", "--cache-dir", str(tmp_path / "cache")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = _pool_workers(parent)
        time.sleep(0.1)
    assert len(workers) >= 2, "the pool never started two workers"
    time.sleep(1.0)  # the workers are importing or training
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted"), stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    alive = [p for p in workers if _running(p)]
    assert not alive, f"orphaned workers: {alive}"


def _pool_workers(parent: psutil.Process) -> list[psutil.Process]:
    """The pool's spawned workers among `parent`'s descendants. A descendant can end between the
    listing and the read of its command line (CI once met a zombie there): it is skipped, as is a
    worker caught between fork and exec, which still shows prunectl's command line (the caller polls)."""
    found = []
    for process in parent.children(recursive=True):
        try:
            if "spawn_main" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:  # ended meanwhile: a zombie awaiting its parent, or gone
            continue
    return found


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie; a process that vanishes while it is asked counts as ended."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_unreachable_ray_address_is_refused_in_one_line_with_exit_2(run_dir, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[dev,ray]'")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    done = _cli(["gate", str(run_dir), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"])
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 60
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in lines[0], done.stderr


def test_ray_missing_is_refused_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra sees
    with pytest.raises(ExecutorError, match=r"pip install 'prunectl\[ray\]'"):
        check_execution(Execution("ray"))


def test_bad_execution_options_are_refused():
    with pytest.raises(ExecutorError, match="needs --executor ray"):
        Execution("local", ray_address="auto")
    with pytest.raises(ExecutorError, match="workers must be >= 1"):
        Execution(workers=0)
    assert make_executor(Execution(workers=1)).describe()["workers"] == 1


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[dev,ray]'")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_gate_bit_identical_figures(ray_instance, run_dir, one_worker, tmp_path):
    on_ray = gate(run_dir, cache_dir=tmp_path / "cache", execution=Execution("ray")).result
    assert _figures(on_ray) == _figures(one_worker)
    assert on_ray.settings["execution"]["executor"] == "ray"
