"""Renders on a real local Ray cluster (2 CPUs, 127.0.0.1) give the same frames as without Ray."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import frame_hashes

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


# Ray on this machine only: single-machine mode keeps every Ray process on 127.0.0.1 (without it
# Ray replaces 127.0.0.1 by the machine's network address); the test cluster has no auth token.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1, chosen by the OS (all held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head on 127.0.0.1 with 2 CPUs, stopped afterwards; yields its address.

    Its ports with a fixed default (GCS 6379, dashboard agent 52365) are free ones the OS picks, so
    that it never collides with another test run's servers; Ray picks the rest (the client server,
    default 10001, runs only with ray[client], which the Ray extra does not install).
    """
    port, agent_port = free_ports(2)
    ray = str(Path(sys.executable).with_name("ray"))
    env = dict(os.environ, **RAY_ENV)
    start = subprocess.run([ray, "start", "--head", "--port", str(port), "--dashboard-agent-listen-port",
                            str(agent_port), "--num-cpus", "2", "--num-gpus", "0", "--node-ip-address", "127.0.0.1",
                            "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=300, env=env)
    assert start.returncode == 0, start.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop"], capture_output=True, timeout=300, env=env)


def song_args(tiny: dict[str, str], song: Path, seed: int = 3) -> list[str]:
    return ["-ap", str(song), "-conf", tiny["vqgan_config"], "-ckpt", tiny["vqgan_checkpoint"], "-m", tiny["clip"],
            "--wav2clip_checkpoint", tiny["wav2clip"], "-gid", "cpu", "-s", "32", "32", "--fps", "8", "-cuts", "2",
            "-sd", str(seed), "--precision", "fp32", "--no_sheets", "--keyframes", "--independent_keyframes",
            "--keyframe_steps", "3", "--batch_keyframes", "2"]


# Ray workers run one torch thread each (--ray_cpus_per_task 1); CPU reductions are bit-exact only
# at the same thread count, so the renders without Ray use one thread too.
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", **RAY_ENV)


def render(args: list[str], out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "generate.py"), *args, "-o", str(out), *extra],
                          cwd=out.parent.parent, capture_output=True, text=True, timeout=900, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def reference(tiny_models, song_wav, tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("ref") / "v" / "v.mp4"
    out.parent.mkdir()
    render(song_args(tiny_models, song_wav), out)
    return frame_hashes(out)


def test_ray_render_has_the_frames_of_a_local_render_even_when_a_worker_is_killed(cluster, reference, tiny_models,
                                                                                  song_wav, tmp_path):
    """Independent keyframes in parallel on two workers; one worker SIGKILLed mid-task is retried."""
    (tmp_path / "a").mkdir()
    plain = render(song_args(tiny_models, song_wav), tmp_path / "a" / "v.mp4", "--ray", cluster)
    assert frame_hashes(tmp_path / "a" / "v.mp4") == reference
    assert "ray: 2 worker(s)" in plain.stderr

    killed: list[int] = []

    def kill_a_running_task() -> None:  # the first worker seen inside TaskWorker.run gets SIGKILL
        deadline = time.time() + 600
        while not killed and time.time() < deadline:
            for pid in os.listdir("/proc"):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if pid.isdigit() and title.startswith(b"ray::TaskWorker.run"):
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            time.sleep(0.01)

    (tmp_path / "b").mkdir()
    killer = threading.Thread(target=kill_a_running_task, daemon=True)
    killer.start()
    render(song_args(tiny_models, song_wav), tmp_path / "b" / "v.mp4", "--ray", cluster)
    killer.join(timeout=1)
    assert killed, "no worker was caught running a task"
    assert frame_hashes(tmp_path / "b" / "v.mp4") == reference


def test_manifest_renders_good_songs_like_single_runs_and_reports_the_bad_one(cluster, reference, tiny_models,
                                                                             song_wav, tmp_path):
    import yaml

    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    other = tmp_path / "single" / "v.mp4"
    other.parent.mkdir()
    render(song_args(tiny_models, song_wav, seed=4), other)

    def row(song: Path, out: str, seed: int) -> dict:
        flags = song_args(tiny_models, song, seed)
        d, i = {}, 0
        while i < len(flags):
            key = flags[i].lstrip("-")
            values = []
            while i + 1 < len(flags) and not flags[i + 1].startswith("-"):
                values.append(flags[i + 1])
                i += 1
            d[key] = values[0] if len(values) == 1 else (values or True)
            i += 1
        d.pop("ap")
        d.update(audio=str(song), output=str(tmp_path / "out" / out))
        return d

    manifest = tmp_path / "songs.yaml"
    manifest.write_text(yaml.safe_dump([row(song_wav, "one.mp4", 3), row(bad, "bad.mp4", 3),
                                        row(song_wav, "two.mp4", 4)]))
    cmd = [sys.executable, "-m", "metamusic.batch", str(manifest), "--ray", cluster]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=ONE_THREAD)
    assert proc.returncode == 1, proc.stderr[-3000:]
    table = proc.stdout.splitlines()
    assert table[0].split() == ["song", "status", "seconds", "output"]
    assert len(table) == 4 and "done" in table[1] and "done" in table[3]
    assert f"failed (exit 2): error: {bad}:" in table[2], table[2]
    assert frame_hashes(tmp_path / "out" / "one.mp4") == reference
    assert frame_hashes(tmp_path / "out" / "two.mp4") == frame_hashes(other)

    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=ONE_THREAD)
    assert again.stdout.count("skipped: already rendered") == 2, again.stdout
