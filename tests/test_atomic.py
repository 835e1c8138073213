"""Atomic writes leave either the old file or the new one, with the mode a plain open() gives."""

from __future__ import annotations

import os
import stat

import pytest

from exporters.atomic import atomic_write_bytes


@pytest.fixture()
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_written_file_gets_the_mode_open_would_give_not_mkstemps_0600(tmp_path, umask_022):
    path = atomic_write_bytes(tmp_path / "model.onnx", b"bytes")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == b"bytes"


def test_replacing_a_file_leaves_no_temporary_behind(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
