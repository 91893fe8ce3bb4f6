"""What a media file holds, read with the bundled ffmpeg (there is no ffprobe).

:func:`probe` parses ``ffmpeg -i``; :func:`frame_timing` reads the frames' stored timestamps
with a packet-copy pass (no decoding), which is how frame counts, B-frame reordering and even
frame periods are checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from metamusic.errors import InputError, MetaMusicError
from metamusic.media.ffmpeg import last_error_line, run_ffmpeg

__all__ = ["FrameTiming", "MediaInfo", "count_video_frames", "frame_timing", "probe"]


@dataclass
class MediaInfo:
    """What ``ffmpeg -i`` says about a media file (first video and first audio stream)."""

    path: Path
    duration: float | None  # container duration in seconds (10 ms resolution)
    video_frames: int | None  # packets of the video stream (frame_timing)
    fps: float | None
    width: int | None
    height: int | None
    video_codec: str | None
    pix_fmt: str | None
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    has_subtitles: bool
    # Filled by probe(count_frames=True) from the packets' own timestamps (frame_timing):
    reordered: bool | None = None  # frames stored out of display order (B-frames): dts != pts somewhere
    even: bool | None = None  # every frame lasts the same period and starts where the previous one ends

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    @property
    def video_duration(self) -> float | None:
        """Length of the video stream: frames / fps (exact for constant-rate video)."""
        if self.video_frames is None or not self.fps:
            return None
        return self.video_frames / self.fps


def _split_top_level(text: str) -> list[str]:
    """Split a stream description on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _parse_rate(token: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)(k?) (?:fps|tbr)", token)
    if not m:
        return None
    return float(m.group(1)) * (1000.0 if m.group(2) else 1.0)


def _parse_probe(path: Path, stderr: str) -> MediaInfo:
    """Build a MediaInfo from the stderr of ``ffmpeg -i path``."""
    duration = None
    m = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", stderr)
    if m:
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    info = MediaInfo(path, duration, None, None, None, None, None, None, False, None, None, False)
    for line in stderr.splitlines():
        m = re.match(r"\s*Stream #\d+:\d+\S*: (Video|Audio|Subtitle): (.*)$", line)
        if not m:
            continue
        kind, desc = m.groups()
        parts = _split_top_level(desc)
        codec = parts[0].split()[0] if parts and parts[0] else None
        if kind == "Video" and info.video_codec is None and "(attached pic)" not in desc:
            info.video_codec = codec
            if len(parts) > 1:
                pm = re.match(r"[a-z0-9_]+", parts[1])
                info.pix_fmt = pm.group(0) if pm else None
            fps = tbr = None
            for part in parts[1:]:
                sm = re.match(r"(\d+)x(\d+)", part)
                if sm and info.width is None:
                    info.width, info.height = int(sm.group(1)), int(sm.group(2))
                if part.endswith(" fps"):
                    fps = _parse_rate(part)
                elif part.endswith(" tbr"):
                    tbr = _parse_rate(part)
            info.fps = fps if fps is not None else tbr
        elif kind == "Audio" and not info.has_audio:
            info.has_audio = True
            info.audio_codec = codec
            for part in parts[1:]:
                rm = re.fullmatch(r"(\d+) Hz", part)
                if rm:
                    info.audio_sample_rate = int(rm.group(1))
        elif kind == "Subtitle":
            info.has_subtitles = True
    return info


def count_video_frames(path: Path) -> int:
    """Number of frames of the first video stream (packets through a null muxer; exact for mp4/h264)."""
    proc = run_ffmpeg(
        ["-nostats", "-loglevel", "error", "-progress", "pipe:1", "-i", str(path),
         "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
        f"counting the frames of {path}",
    )
    frames = re.findall(r"^frame=(\d+)\s*$", proc.stdout, flags=re.M)
    if not frames:
        raise MetaMusicError(f"{path}: ffmpeg reported no frame count")
    return int(frames[-1])


@dataclass(frozen=True)
class FrameTiming:
    """Timestamps of a video stream's frames, in display order, as stored (no decoding, no re-timing)."""

    time_base: Fraction  # seconds per tick
    pts: tuple[int, ...]  # (N,) presentation time of each frame, ticks, ascending
    durations: tuple[int, ...]  # (N,) how long each frame lasts, ticks
    reordered: bool  # some frame is decoded before it is shown (dts != pts): B-frames

    def __len__(self) -> int:
        return len(self.pts)

    def times(self) -> np.ndarray:
        """(N,) presentation times in seconds."""
        return np.asarray(self.pts, dtype=np.float64) * float(self.time_base)

    @property
    def end(self) -> float:
        """When the last frame stops showing, in seconds (0 for no frame)."""
        if not self.pts:
            return 0.0
        return float((self.pts[-1] + self.durations[-1]) * self.time_base)

    def period(self) -> Fraction | None:
        """The common frame period in seconds when every frame lasts it and follows the previous one, else None."""
        if not self.pts:
            return None
        steps = {b - a for a, b in zip(self.pts[:-1], self.pts[1:])} | set(self.durations)
        if len(steps) != 1:
            return None
        return steps.pop() * self.time_base


def frame_timing(path: Path | str) -> FrameTiming:
    """The stored timestamps of the first video stream's frames (packet copy to framemd5: fast, no decode)."""
    proc = run_ffmpeg(
        ["-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "pipe:1"],
        f"reading the frame timestamps of {path}",
    )
    time_base: Fraction | None = None
    packets: list[tuple[int, int, int]] = []  # (pts, dts, duration)
    for line in proc.stdout.splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            cols = [c.strip() for c in line.split(",")]
            packets.append((int(cols[2]), int(cols[1]), int(cols[3])))  # stream, dts, pts, duration, ...
    if time_base is None:
        raise MetaMusicError(f"{path}: ffmpeg reported no time base for the video stream")
    reordered = any(pts != dts for pts, dts, _ in packets)
    packets.sort()
    return FrameTiming(time_base, tuple(p for p, _, _ in packets), tuple(d for _, _, d in packets), reordered)


def probe(path: Path | str, count_frames: bool = True) -> MediaInfo:
    """Describe a media file by parsing ``ffmpeg -i`` (there is no ffprobe); InputError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    proc = run_ffmpeg(["-i", str(path)], check=False)
    if "Input #0" not in proc.stderr:
        raise InputError(f"{path}: not a readable media file ({last_error_line(proc.stderr)})")
    info = _parse_probe(path, proc.stderr)
    if count_frames and info.has_video:
        timing = frame_timing(path)
        info.video_frames = len(timing)
        info.reordered = timing.reordered
        info.even = timing.period() is not None
    return info
