"""Crash safety: a run killed or interrupted at any point never looks finished, and resumes exactly.

Real processes are killed with real signals at exact points through `PRUNECTL_FAULT`
(`prunectl.faults`), never by sleeping and hoping: SIGKILL (nothing can clean up), SIGINT
(Ctrl-C) and SIGTERM (a cancelled CI job).

Each child starts with SIGINT at its default, as a terminal's foreground job has it. A test
process started in the background by a non-interactive shell (`make test &`, some CI runners)
has SIGINT *ignored*, and a child would inherit that: Python then installs no Ctrl-C handler,
the simulated Ctrl-C did nothing, and the run finished with exit 0. That, not timing, was the
rare failure of the SIGINT case.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_recipe
from prunectl.config import to_toml
from prunectl.faults import FAULT_ENV

pytestmark = pytest.mark.slow

RECIPE = make_tiny_recipe(prune__rounds=3, prune__epochs_per_round=2)


@contextlib.contextmanager
def sigint_as_at_a_terminal() -> Iterator[None]:
    """While children are started, SIGINT is handled here, so exec gives them its default.

    An ignored signal stays ignored across exec, a handled one is reset to default; so a test
    process that inherited SIGINT ignored takes Python's handler for the duration."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prunectl(args: list[str], fault: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault is not None:
        env[FAULT_ENV] = fault
    with sigint_as_at_a_terminal():
        return subprocess.run([sys.executable, "-m", "prunectl.cli", *args], capture_output=True, text=True, env=env, timeout=600, cwd=cwd)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "pruned.pt", weights_only=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "recipe.toml"
    path.write_text(to_toml(RECIPE))
    return path


@pytest.fixture(scope="module")
def uninterrupted(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    done = _prunectl(["prune", "--config", str(config), "--out", str(out)])
    assert done.returncode == 0, done.stderr
    return out


def test_a_prune_sigkilled_mid_round_never_looks_finished_and_resumes_to_the_same_weights(config, uninterrupted, tmp_path):
    """Killed in round 2's fine-tuning, after round 1's checkpoint: round 2 is redone from it."""
    out = tmp_path / "run"
    crashed = _prunectl(["prune", "--config", str(config), "--out", str(out)], fault="kill@round-2-epoch-1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert not (out / "manifest.json").exists() and not (out / "pruned.pt").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["round-1.pt"]

    refused = _prunectl(["prune", "--config", str(config), "--out", str(out)])
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = _prunectl(["prune", "--resume", str(out), "--json"])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from_round"] == 1
    straight, recovered = _weights(uninterrupted), _weights(out)
    assert straight.keys() == recovered.keys()
    assert all(torch.equal(straight[k], recovered[k]) for k in straight)


@pytest.mark.parametrize(
    ("fault", "code", "said", "resume"),
    [("interrupt@round-2-epoch-1", 130, "interrupted", True), ("terminate@round-2-epoch-1", 143, "terminated (SIGTERM)", False)],
    ids=["Ctrl-C (SIGINT)", "a cancelled CI job (SIGTERM)"],
)
def test_a_signal_stops_the_run_at_once_and_says_how_to_resume(config, uninterrupted, tmp_path, fault, code, said, resume):
    out = tmp_path / "run"
    stopped = _prunectl(["prune", "--config", str(config), "--out", str(out)], fault=fault)
    assert stopped.returncode == code, stderr_tail(stopped)
    last_line = stopped.stderr.strip().splitlines()[-1]
    assert said in last_line and f"prunectl prune --resume {out}" in last_line
    assert "Traceback" not in stopped.stderr
    # "At once": round 2 was in progress, so no later checkpoint and nothing finished was written.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["round-1.pt"]
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob("*.tmp")), "an interrupted atomic write cleans up its temporary file"
    if not resume:  # the state a signal leaves is the state a kill leaves; one resume proves it
        return

    resumed = _prunectl(["prune", "--resume", str(out)])
    assert resumed.returncode == 0, resumed.stderr
    straight, recovered = _weights(uninterrupted), _weights(out)
    assert all(torch.equal(straight[k], recovered[k]) for k in straight)


def test_a_child_started_with_sigint_ignored_still_gets_a_working_ctrl_c(config, tmp_path):
    """What `make test &` does to the test process: SIGINT ignored. The harness undoes it for its
    children, and an interrupt fault in a process that does ignore it says so instead of nothing."""
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "True", "ignored is inherited"
        with sigint_as_at_a_terminal():
            assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "False"
        env = {**os.environ, FAULT_ENV: "interrupt@round-1-epoch-1"}
        ignored = subprocess.run(
            [sys.executable, "-m", "prunectl.cli", "prune", "--config", str(config), "--out", str(tmp_path / "run")],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "SIGINT is ignored in this process" in ignored.stderr


@pytest.mark.parametrize(("fault", "code", "said"), [("interrupt@after-command", 130, "interrupted"), ("terminate@after-command", 143, "terminated (SIGTERM)")])
def test_a_signal_after_the_command_finished_still_exits_130_or_143_in_one_line(tmp_path, fault, code, said):
    """Between the command's return and the exit, Ctrl-C used to become click's "Aborted!" and
    exit 1, which a CI job reads as a failed gate; and SIGTERM killed the process outright."""
    stopped = _prunectl(["init", str(tmp_path / "prunectl.toml")], fault=fault)
    assert stopped.returncode == code, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == said
    assert "Traceback" not in stopped.stderr and "Aborted" not in stopped.stderr


class _Exploit:
    """Unpickling this creates a file: what a poisoned checkpoint would do."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_poisoned_round_checkpoint_is_refused_on_resume_and_never_executed(config, tmp_path):
    """Someone swapped the last round's checkpoint of a killed run for a hostile pickle."""
    out = tmp_path / "run"
    assert _prunectl(["prune", "--config", str(config), "--out", str(out)], fault="kill@round-2").returncode == -signal.SIGKILL
    marker = tmp_path / "pwned"
    torch.save({"model": _Exploit(str(marker))}, out / "checkpoints" / "round-2.pt")
    refused = _prunectl(["prune", "--resume", str(out)])
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "round-2.pt" in lines[0] and "weights_only=True" in lines[0] and "delete round-2.pt" in lines[0]
    assert "weights_only=False" not in refused.stderr
    assert not marker.exists()
    assert not (out / "manifest.json").exists()


def stderr_tail(done: subprocess.CompletedProcess) -> str:
    return "\n".join(done.stderr.strip().splitlines()[-5:])


def test_a_killed_export_leaves_the_previous_artifact_untouched_and_no_new_one(released_run, tmp_path):
    run = tmp_path / "release"
    import shutil

    shutil.copytree(released_run[1], run)
    before = {p.name: _sha256(p) for p in (run / "export").iterdir() if p.is_file()}
    manifest_before = (run / "manifest.json").read_bytes()

    crashed = _prunectl(["export", str(run)], fault="kill@export")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert {p.name: _sha256(p) for p in (run / "export").iterdir() if p.is_file()} == before
    assert (run / "manifest.json").read_bytes() == manifest_before
    assert _prunectl(["verify", str(run), "--no-parity"]).returncode == 0, "the earlier release still verifies"


def test_a_compress_killed_during_export_leaves_no_release_artifact_and_resume_finishes_it(released_run, tmp_path):
    """The gate passed, then the machine died while exporting: nothing may look released."""
    run = tmp_path / "release"
    import shutil

    shutil.copytree(released_run[1], run)
    shutil.rmtree(run / "export")
    manifest = json.loads((run / "manifest.json").read_text())
    for section in ("export", "bench", "release"):
        manifest.pop(section, None)
    manifest["stage"] = "pruned"
    (run / "manifest.json").write_text(json.dumps(manifest))
    quick_gate = ["--shadows", "1", "--cache-dir", str(tmp_path / "cache")]

    crashed = _prunectl(["compress", "--config", str(run / "recipe.toml"), "--out", str(run), "--resume", *quick_gate], fault="kill@export")
    assert crashed.returncode == -signal.SIGKILL, stderr_tail(crashed)
    assert not (run / "export" / "model.onnx").exists()
    assert not list(run.rglob("model.onnx")) or all(p.parent.name.startswith(".") for p in run.rglob("model.onnx")), (
        "only the hidden staging directory may hold a partial export"
    )
    recorded = json.loads((run / "manifest.json").read_text())
    assert recorded["stage"] != "released" and "release" not in recorded
    assert _prunectl(["verify", str(run), "--no-parity"]).returncode == 1

    resumed = _prunectl(["compress", "--config", str(run / "recipe.toml"), "--out", str(run), "--resume", *quick_gate])
    assert resumed.returncode == 0, stderr_tail(resumed)
    assert not list(run.glob(".export*")), "the staging directory is gone"
    assert _prunectl(["verify", str(run)]).returncode == 0


_KILL_BEFORE_RENAME = """
import os, signal, sys
from pathlib import Path
from exporters.atomic import atomic_write_bytes

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)

os.replace = die  # the bytes are written and fsynced; the process dies before the rename
atomic_write_bytes(Path(sys.argv[1]), b"new contents, complete or not at all")
"""


def test_an_atomic_write_killed_before_its_rename_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old contents")
    done = subprocess.run([sys.executable, "-c", _KILL_BEFORE_RENAME, str(target)], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert target.read_text() == "old contents"
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert leftovers and all(name.startswith(".manifest.json.") and name.endswith(".tmp") for name in leftovers), leftovers


def test_an_atomic_write_fsyncs_the_file_before_renaming_it(tmp_path, monkeypatch):
    from exporters import atomic

    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    atomic.atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert calls[:2] == ["fsync", "replace"], calls
    assert "fsync" in calls[2:], "the directory is fsynced after the rename, so the rename survives a power loss"
