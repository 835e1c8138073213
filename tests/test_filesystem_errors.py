"""A directory the operating system will not write is bad input: one line naming it, exit 2, nothing lost.

`--out` that cannot be created (under /proc, on a read-only mount, without permission), a cache
directory that cannot be written, and a disk that fills up mid-run each end in exit 2 with one
line that names the path and what to do, never exit 3 and a traceback; the refusals before any
work leave nothing behind, and a write that fails mid-run leaves no half-written file.

The read-only and full-disk cases mount a small tmpfs, which needs root (CI runs as root); the
full-disk case is also simulated in process, so it is proven wherever the suite runs.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_tiny_recipe, without_file_capabilities
from typer.testing import CliRunner

from exporters import atomic
from prunectl.cli import app
from prunectl.config import to_toml

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(to_toml(make_tiny_recipe()))
    return path


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output and "internal error" not in output, output
    return lines[0]


def test_an_out_directory_that_cannot_be_created_is_refused_before_any_work(config, tmp_path):
    out = Path("/proc/prunectl-test/run")
    result = runner.invoke(app, ["prune", "--config", str(config), "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert str(out) in line and "choose another --out" in line
    assert not out.exists()


def test_a_cache_directory_that_cannot_be_written_is_refused_before_any_work(config, tmp_path):
    cache = Path("/proc/prunectl-test/cache")
    result = runner.invoke(app, ["compress", "--config", str(config), "--out", str(tmp_path / "run"), "--cache-dir", str(cache)])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert str(cache) in line and "--cache-dir or set PRUNECTL_CACHE_DIR" in line
    assert not (tmp_path / "run").exists(), "nothing was written before the refusal"


@pytest.mark.parametrize("which", ["--out", "--cache-dir"])
def test_a_directory_without_write_permission_is_refused_naming_it(config, tmp_path, which):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    out, cache = (locked / "run", tmp_path / "cache") if which == "--out" else (tmp_path / "run", locked / "cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNECTL_")}
    command = [*without_file_capabilities(), sys.executable, "-m", "prunectl.cli", "prune", "--config", str(config), "--out", str(out), "--cache-dir", str(cache)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert str(locked) in line and "Permission denied" in line
    assert list(locked.iterdir()) == [] and not (tmp_path / "run").exists()


def test_a_disk_that_fills_up_mid_write_is_one_line_and_leaves_no_half_written_file(config, tmp_path, monkeypatch):
    """Simulated: the operating system refuses the first fsync with ENOSPC, as a full disk does."""

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    out = tmp_path / "run"
    result = runner.invoke(app, ["prune", "--config", str(config), "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert "No space left on device" in line and "free some space" in line and str(out) in line
    assert not list(out.rglob("*.tmp")) and not (out / "manifest.json").exists()


# -- real file systems: a read-only mount and a full one ----------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of 256 KiB (or `request.param`), unmounted afterwards (mounting needs root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "small"
    mount.mkdir()
    size = getattr(request, "param", "256k")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _prunectl(*argv: str, cache: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNECTL_")}
    return subprocess.run([sys.executable, "-m", "prunectl.cli", *argv, "--cache-dir", str(cache)], capture_output=True, text=True, env=env, timeout=600)


def test_an_out_directory_on_a_read_only_file_system_is_refused_before_any_work(config, tmp_path, small_filesystem):
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    done = _prunectl("prune", "--config", str(config), "--out", str(small_filesystem / "run"), cache=tmp_path / "cache")
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert str(small_filesystem / "run") in line and "Read-only file system" in line and "choose another --out" in line


def test_a_gate_on_a_run_in_a_read_only_directory_is_refused_before_it_trains_a_shadow(tiny_run, tmp_path, small_filesystem):
    shutil.copytree(tiny_run[1], small_filesystem / "run", ignore=shutil.ignore_patterns("checkpoints"))
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    done = _prunectl("gate", str(small_filesystem / "run"), cache=tmp_path / "cache")
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert "Read-only file system" in line and "copy the run somewhere writable" in line
    assert not (tmp_path / "cache").exists(), "no shadow was trained"


@pytest.mark.parametrize("small_filesystem", ["48k"], indirect=True, ids=["48 KiB: less than the tiny run's files"])
def test_a_disk_that_fills_up_during_a_run_is_one_line_and_leaves_no_half_written_file(config, tmp_path, small_filesystem):
    out = small_filesystem / "run"
    done = _prunectl("prune", "--config", str(config), "--out", str(out), cache=tmp_path / "cache")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]  # after the progress bars of the work done so far
    assert line.startswith("error: cannot write ") and "No space left on device" in line and "free some space" in line
    assert not list(out.rglob("*.tmp")), "the write that failed left no temporary file"
    assert not (out / "manifest.json").exists(), "nothing looks finished"
