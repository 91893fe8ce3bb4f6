"""What many test files share: the tiny models' flags, fast render flags, and two ways to run a script.

``run_script`` runs a top-level script in a real child process (for what only a real process
shows: its exit status, its output, signals). ``run_main`` runs the same command line in this
process through the script's main function, without the start-up cost of a new interpreter
(importing torch and friends), and returns the same kind of result.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
FPS = 10
SONG_SECONDS = 6.0  # the song_wav fixture: 120 bpm
LYRICS = ("timestamp,text\n00:01,a red sunrise over the hills\n00:03,the deep blue ocean\n"
          "00:04,a green forest at night\n")


def model_flags(tiny: dict[str, str]) -> list[str]:
    """The flags that point a render at the tiny checkpoints of the ``tiny_models`` fixture."""
    return ["-conf", tiny["vqgan_config"], "-ckpt", tiny["vqgan_checkpoint"], "-m", tiny["clip"],
            "--wav2clip_checkpoint", tiny["wav2clip"]]


def fast_flags(*, ips: float = 4, cuts: int = 4, seed: int = 7, fps: int = FPS, size: tuple[int, int] = (32, 32),
               sheets: bool = True) -> list[str]:
    """A small, fast, exact CPU render: 32x32, few steps and cut-outs, a fixed seed, fp32."""
    flags = ["-gid", "cpu", "-s", str(size[0]), str(size[1]), "--fps", str(fps), "-ips", f"{ips:g}",
             "-cuts", str(cuts), "-sd", str(seed), "--precision", "fp32"]
    return flags if sheets else [*flags, "--no_sheets"]


def run_script(script: str, args: Sequence[str], cwd: Path, *, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """``python ROOT/script args...`` in a child process, its output captured as text."""
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@dataclass
class Result:
    """What :func:`run_main` saw: the exit status and everything written to stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def _main_of(script: str) -> Callable[[Sequence[str] | None], int]:
    """The function that ``ROOT/script`` calls, with the same error handling (``run_cli``)."""
    from metamusic import cli
    from metamusic.console import run_cli

    if script == "evaluate.py":
        from metamusic.evaluate import main as evaluate

        return lambda argv: run_cli(evaluate, argv)
    mains = {"generate.py": cli.generate_main, "generate_interpolate.py": cli.interpolate_main,
             "combine_mp4.py": cli.combine_main}
    return mains[script]


def run_main(script: str, args: Sequence[str], cwd: Path) -> Result:
    """Run ``python script args...`` in this process, in ``cwd``, as the script would.

    Its stdout and stderr are captured, with the log lines the script prints on stderr
    (``run_cli`` logs INFO and up as bare messages); argparse's exits become the exit status.
    """
    main = _main_of(script)
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    level = root.level
    here = os.getcwd()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse: --help, or a flag it refuses
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(here)
        root.removeHandler(handler)
        root.setLevel(level)
    return Result(code, out.getvalue(), err.getvalue())


def frame_hashes(video: Path) -> list[str]:
    """SHA-256 of each decoded frame of ``video``: equal lists mean frame-for-frame equal videos."""
    import hashlib

    from metamusic.media.video import read_frames

    return [hashlib.sha256(f.tobytes()).hexdigest() for f in read_frames(video)]


def assert_song_length(video: Path, duration: float, fps: float = FPS) -> None:
    """``video`` has audio and round(duration * fps) frames (one either way), lasting ``duration``."""
    from metamusic.media.video import probe

    info = probe(video)
    assert info.has_audio, f"{video} has no audio stream"
    assert abs(info.video_frames - round(duration * fps)) <= 1, info
    assert abs(info.duration - duration) <= 1.0 / fps, info
