"""The one place that finds and runs ffmpeg (the binary bundled with imageio-ffmpeg).

ffmpeg always runs from an argument list, never a shell string, with no standard input; a
failure becomes one :class:`~metamusic.errors.MetaMusicError` line carrying the most specific
line of ffmpeg's stderr.
"""

from __future__ import annotations

import re
import signal
import subprocess
from typing import Any, Sequence

from metamusic.errors import MetaMusicError

__all__ = ["exit_description", "ffmpeg_exe", "last_error_line", "popen_ffmpeg", "run_ffmpeg"]

_GENERIC_LINES = (
    "conversion failed!",
    "exiting normally",
    "error opening output files",
    "error opening output file",
    "error opening input files",
    "at least one output file must be specified",
)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (no system ffmpeg is needed)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # missing package or binary: an installation problem
        raise MetaMusicError(f"ffmpeg is not available ({exc}); reinstall imageio-ffmpeg") from None


def last_error_line(stderr: str | bytes) -> str:
    """The most specific line of ffmpeg's stderr: the last non-generic, non-empty one."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.lower().startswith(_GENERIC_LINES):
            return re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", line)
    return lines[-1] if lines else "no error message"


def exit_description(returncode: int | None) -> str:
    """What an ffmpeg exit status means, for messages (a signal is named; SIGXFSZ is a full file limit)."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGXFSZ":
            return "File too large (ffmpeg was stopped by the file size limit)"
        return f"ffmpeg was stopped by {name}"
    return f"ffmpeg exited with status {returncode}"


def run_ffmpeg(args: Sequence[str], what: str = "running", *, check: bool = True,
               text: bool = True) -> subprocess.CompletedProcess:
    """Run ``ffmpeg -hide_banner -nostdin ARGS``; stdout and stderr captured (as text unless ``text`` is False).

    With ``check`` a non-zero exit raises MetaMusicError("ffmpeg failed while WHAT: LINE").
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    options: dict[str, Any] = {"text": True, "errors": "replace"} if text else {}
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, **options)
    if check and proc.returncode != 0:
        detail = last_error_line(proc.stderr) if proc.stderr.strip() else exit_description(proc.returncode)
        raise MetaMusicError(f"ffmpeg failed while {what}: {detail}")
    return proc


def popen_ffmpeg(args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """Start ``ffmpeg -hide_banner -nostdin ARGS`` (streams set by the caller's ``kwargs``)."""
    return subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], **kwargs)
