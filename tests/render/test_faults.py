"""Faults a long render meets: a full disk mid-render, then the same command once space is freed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import Result, frame_hashes, model_flags, run_main


def folder_bytes(*paths: Path) -> int:
    total = 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
    return total


def mount_tmpfs(where: Path, size: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}"
    if os.path.ismount(where):
        opts = "remount," + opts
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "small"
    if os.geteuid() != 0 or not mount_tmpfs(where, 1 << 20):
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


def test_full_disk_is_one_line_and_the_same_command_resumes_identically(tiny_models, song_wav, small_disk,
                                                                         tmp_path):
    args = ["-ap", str(song_wav), *model_flags(tiny_models), "-gid", "cpu", "-s", "32", "32", "--fps", "10",
            "-ips", "4", "-cuts", "2", "-sd", "5", "--precision", "fp32", "--no_sheets"]

    def render(out: Path) -> Result:
        return run_main("generate.py", [*args, "-o", str(out)], tmp_path)

    reference = render(tmp_path / "ref" / "v.mp4")
    assert reference.returncode == 0, reference.stderr
    needed = folder_bytes(tmp_path / "ref")

    assert mount_tmpfs(small_disk, needed // 2)  # room for about half of the render
    out = small_disk / "v.mp4"
    full = render(out)
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    line = full.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {small_disk / 'v.run'}: no space left on its disk"), line
    assert "MB more" in line and "run the same command again" in line
    assert not out.exists()
    finished = len(list((small_disk / "v.run" / "tasks").glob("*.json")))
    assert finished >= 1

    assert mount_tmpfs(small_disk, 8 * needed)  # space freed
    again = render(out)
    assert again.returncode == 0, again.stderr
    assert f"resuming {small_disk / 'v.run'}" in again.stderr
    assert frame_hashes(out) == frame_hashes(tmp_path / "ref" / "v.mp4")


def test_sigterm_is_handled_like_ctrl_c_but_exits_143():
    """Schedulers and preemptible VMs send SIGTERM: it interrupts the render as Ctrl-C does."""
    import signal

    from metamusic.errors import Interrupted, Terminated
    from metamusic.render import _sigint_watch

    before = signal.getsignal(signal.SIGTERM)
    with _sigint_watch() as interrupted:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        assert interrupted() == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    assert issubclass(Terminated, Interrupted) and Terminated.exit_code == 143 and Interrupted.exit_code == 130
