"""A studio served on 127.0.0.1 by a child process, with the tiny checkpoints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tiny_models, tmp_path_factory):
    """(url, workdir, port) of a running studio; stopped (SIGINT, then kill) after the module."""
    pytest.importorskip("gradio")
    workdir = tmp_path_factory.mktemp("studio_runs")
    port = free_port()
    argv = [sys.executable, "-m", "metamusic.studio", "-conf", tiny_models["vqgan_config"],
            "-ckpt", tiny_models["vqgan_checkpoint"], "-m", tiny_models["clip"],
            "--wav2clip_checkpoint", tiny_models["wav2clip"], "-gid", "cpu", "--workdir", str(workdir),
            "--port", str(port)]
    log = workdir.parent / "studio.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = None
        deadline = time.time() + 120
        while url is None and time.time() < deadline and proc.poll() is None:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("MetaMusic Studio: "):
                    url = line.split()[2]
            time.sleep(0.3)
        assert url, f"studio did not start: {log.read_text(errors='replace')[-2000:]}"
        yield url, workdir, port
    finally:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
