"""Atomic, durable writes (metamusic/files.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_atomic_writes_fsync_the_file_and_its_folder(tmp_path, monkeypatch):
    from metamusic import files

    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name file descriptors")
    monkeypatch.setattr(os, "fsync", spy)
    target = tmp_path / "sub" / "out.txt"
    files.atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    # The temporary file is flushed before the rename, the folder after it.
    assert len(synced) == 2
    assert Path(synced[0]).parent == target.parent and Path(synced[0]).name.startswith(".out.")
    assert synced[1] == str(target.parent)
    assert not [p for p in target.parent.iterdir() if p.name != "out.txt"]


def test_a_failed_write_leaves_nothing(tmp_path):
    from metamusic import files

    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
