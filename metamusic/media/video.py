"""Video I/O through the ffmpeg binary bundled with imageio-ffmpeg.

Frames stream to an ffmpeg pipe from a background thread (:class:`FrameWriter`); segments are
joined with the concat demuxer (stream copy when they match) and the song is muxed as AAC
(:func:`concat_videos`, :func:`mux_audio`). Probing (:func:`probe`, :func:`frame_timing`) lives
in :mod:`metamusic.media.probe` and is importable from here too. Every output is written to a hidden
temporary name beside its destination and renamed onto it only when ffmpeg succeeded, so a file
at the destination path is always complete.

ffmpeg always runs from an argument list (never a shell string); its failures surface as
:class:`~metamusic.errors.MetaMusicError` carrying ffmpeg's last meaningful stderr line.
"""

from __future__ import annotations

import math
import os
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from metamusic.errors import InputError, MetaMusicError
from metamusic.files import replace_durably
from metamusic.media.ffmpeg import (
    exit_description,
    ffmpeg_exe,
    last_error_line,
    popen_ffmpeg,
    run_ffmpeg,
)
from metamusic.media.probe import (  # noqa: F401 (count_video_frames: re-exported)
    FrameTiming,
    MediaInfo,
    count_video_frames,
    frame_timing,
    probe,
)

__all__ = [
    "ConcatResult",
    "FrameTiming",
    "FrameWriter",
    "MediaInfo",
    "concat_videos",
    "extract_frame",
    "ffmpeg_exe",
    "frame_timing",
    "mux_audio",
    "probe",
    "read_frames",
    "temp_path_for",
]

AUDIO_BITRATE = "192k"


# ----------------------------------------------------------------------------------------------
# ffmpeg plumbing


def temp_path_for(path: Path) -> Path:
    """Hidden in-progress name beside ``path``: ``dir/.name.partial.mp4`` (dot-prefixed, so segment scans skip it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")


def _discard(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rate(fps: float) -> str:
    """A frame rate as the exact fraction ffmpeg should use (29.97... -> 30000/1001)."""
    if not (isinstance(fps, (int, float, Fraction)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"frame rate must be a positive number, got {fps!r}")
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


# ----------------------------------------------------------------------------------------------
# Writing frames


class FrameWriter:
    """Stream RGB frames to an H.264 mp4 through ffmpeg from a background thread.

    ``write`` converts the frame and puts its bytes on a bounded queue; a worker thread feeds
    ffmpeg, so the caller waits only when ``queue_size`` frames are already pending (the time
    spent waiting is in :attr:`wait_seconds`, the final drain in :attr:`close_seconds`). The
    file is encoded under a hidden temporary name beside ``path`` and renamed onto ``path`` by a
    clean :meth:`close`; :meth:`abort` (and any exception inside a ``with`` block) kills ffmpeg
    and deletes the temporary file. An ffmpeg failure is raised by the next write() or close().
    """

    def __init__(
        self,
        path: Path | str,
        fps: float,
        size: tuple[int, int],
        crf: int = 17,
        preset: str = "medium",
        queue_size: int = 8,
    ) -> None:
        self.path = Path(path)
        self.temp_path = temp_path_for(self.path)
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise InputError(
                f"{self.path}: frame size {width}x{height} cannot be encoded as yuv420p H.264; "
                "width and height must be positive and even"
            )
        if not 0 <= int(crf) <= 51:
            raise InputError(f"{self.path}: crf must be in 0..51, got {crf}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.fps = float(fps)
        self.size = (width, height)
        self.frames_written = 0
        self.wait_seconds = 0.0  # time write() spent blocked on a full queue
        self.close_seconds = 0.0  # time close() spent waiting for the queue to drain
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._closed = False

        rate = _rate(fps)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = tempfile.TemporaryFile()
        cmd = [
            "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", rate,
            "-i", "pipe:0", "-an",
            # no B-frames: segment files then join by stream copy with every frame lasting 1/fps
            # (see _joinable); costs a few percent of file size at crf 17
            "-c:v", "libx264", "-preset", str(preset), "-crf", str(int(crf)), "-bf", "0", "-pix_fmt", "yuv420p",
            "-r", rate, "-movflags", "+faststart", "-f", "mp4", str(self.temp_path),
        ]
        # Own session: a terminal Ctrl-C reaches Python, which then aborts ffmpeg itself.
        self._proc = popen_ffmpeg(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                      start_new_session=True)
        self._thread = threading.Thread(target=self._pump, name=f"FrameWriter({self.path.name})", daemon=True)
        self._thread.start()

    # -- worker ---------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Worker: feed queued frames to ffmpeg's stdin until the end marker; keep draining after an error."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None or self._stop.is_set():
                continue
            try:
                self._proc.stdin.write(item)
            except BaseException as exc:  # BrokenPipeError when ffmpeg died; reported by the caller
                self._error = exc

    # -- caller side ----------------------------------------------------------------------------

    def _to_bytes(self, frame: Any) -> bytes:
        width, height = self.size
        if isinstance(frame, np.ndarray):
            if frame.dtype != np.uint8 or frame.shape != (height, width, 3):
                raise ValueError(
                    f"numpy frames must be uint8 of shape ({height}, {width}, 3), got {frame.dtype} {frame.shape}"
                )
            return np.ascontiguousarray(frame).tobytes()
        if not hasattr(frame, "detach"):
            raise TypeError(f"frames must be torch tensors or numpy arrays, got {type(frame).__name__}")
        t = frame.detach()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if tuple(t.shape) != (3, height, width):
            raise ValueError(f"tensor frames must have shape (3, {height}, {width}) or (1, 3, {height}, {width}), "
                             f"got {tuple(frame.shape)}")
        import torch

        t = torch.nan_to_num(t.float(), nan=0.0).clamp(0, 1).mul(255).round().to(torch.uint8)  # (3, H, W)
        return t.permute(1, 2, 0).contiguous().cpu().numpy().tobytes()  # (H, W, 3)

    def _raise_worker_error(self) -> None:
        tail = self._stderr_tail() or f"{exit_description(self._proc.poll())} ({self._error})"
        self._abort()
        raise MetaMusicError(f"ffmpeg stopped while writing {self.path}: {tail}")

    def _stderr_tail(self) -> str:
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        return last_error_line(text) if text.strip() else ""

    def write(self, frame: Any) -> None:
        """Queue one frame: a tensor (3, H, W) or (1, 3, H, W) in [0, 1] on any device, or uint8 (H, W, 3)."""
        if self._closed:
            raise MetaMusicError(f"{self.path}: write() after close()")
        if self._error is not None:
            self._raise_worker_error()
        data = self._to_bytes(frame)
        start = time.perf_counter()
        self._queue.put(data)
        self.wait_seconds += time.perf_counter() - start
        self.frames_written += 1

    def close(self) -> Path:
        """Finish encoding and move the file onto ``path``; raise MetaMusicError if ffmpeg failed."""
        if self._closed:
            return self.path
        start = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        self.close_seconds = time.perf_counter() - start
        if self._error is not None:
            self._raise_worker_error()
        try:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            returncode = self._proc.wait()
        except BaseException:  # e.g. Ctrl-C while ffmpeg finishes: leave nothing half-written
            self._abort()
            raise
        self._closed = True
        if returncode != 0 or self.frames_written == 0:
            tail = (self._stderr_tail() or exit_description(returncode)) if returncode != 0 else "no frames were written"
            self._closed = False
            self._abort()
            raise MetaMusicError(f"ffmpeg failed while writing {self.path}: {tail}")
        self._stderr.close()
        replace_durably(self.temp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial file; ``path`` is left untouched."""
        self._abort()

    def _abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._proc.poll() is None:
            self._proc.kill()
        self._queue.put(None)  # the worker keeps draining, so this cannot block for long
        self._thread.join()
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.wait()
        self._stderr.close()
        _discard(self.temp_path)

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self._abort()
        return False


# ----------------------------------------------------------------------------------------------
# Reading frames


def read_frames(path: Path | str) -> Iterator[np.ndarray]:
    """Decode the first video stream of ``path`` one frame at a time as uint8 (H, W, 3)."""
    info = probe(path, count_frames=False)
    if not info.has_video or not info.width or not info.height:
        raise InputError(f"{path}: no video stream")
    width, height = info.width, info.height
    nbytes = width * height * 3
    cmd = ["-loglevel", "error", "-i", str(path), "-map", "0:v:0",
           "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    proc = popen_ffmpeg(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    drain.start()
    try:
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)  # (H, W, 3)
        returncode = proc.wait()
        drain.join()
        if returncode != 0:
            text = b"".join(stderr_chunks).decode("utf-8", "replace")
            raise MetaMusicError(f"ffmpeg failed while decoding {path}: {last_error_line(text)}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def extract_frame(path: Path | str, index: int) -> np.ndarray:
    """Decode frame ``index`` (0-based) of the first video stream as uint8 (H, W, 3)."""
    info = probe(path, count_frames=False)
    if not info.has_video or not info.width or not info.height:
        raise InputError(f"{path}: no video stream")
    if index < 0:
        raise IndexError(f"frame index must be >= 0, got {index}")
    proc = run_ffmpeg(
        ["-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-vf", f"select=eq(n\\,{int(index)})",
         "-fps_mode", "passthrough", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        f"extracting frame {index} of {path}", text=False,
    )
    nbytes = info.width * info.height * 3
    if len(proc.stdout) < nbytes:
        raise IndexError(f"{path}: no frame {index}")
    return np.frombuffer(proc.stdout[:nbytes], dtype=np.uint8).reshape(info.height, info.width, 3).copy()


# ----------------------------------------------------------------------------------------------
# Concatenating and muxing


@dataclass
class ConcatResult:
    """What :func:`concat_videos` wrote."""

    path: Path
    stream_copy: bool  # True: segments were joined without re-encoding
    frames: int  # video frames written
    fps: float


def _concat_line(path: Path) -> str:
    """One concat-demuxer line for ``path``: single-quoted, with ``'`` written as ``'\\''``."""
    text = str(Path(path).resolve())
    if "\n" in text or "\r" in text:
        raise InputError(f"{path!r}: file names with line breaks cannot be concatenated; rename the file")
    return "file '" + text.replace("'", "'\\''") + "'\n"


def _compatible(a: MediaInfo, b: MediaInfo) -> str | None:
    """Why ``b`` cannot be stream-copied after ``a`` (None when it can)."""
    for field in ("video_codec", "width", "height", "pix_fmt"):
        if getattr(a, field) != getattr(b, field):
            return f"{field} {getattr(b, field)} differs from {getattr(a, field)} in {a.path.name}"
    if a.fps is None or b.fps is None or abs(a.fps - b.fps) > 1e-3 * max(a.fps, b.fps):
        return f"frame rate {b.fps} differs from {a.fps} in {a.path.name}"
    return None


def _joinable(info: MediaInfo) -> str | None:
    """Why ``info`` cannot be stream-copied next to other files with exact frame timing (None when it can).

    The concat demuxer shifts each file by the length of the ones before it. With B-frames a file's
    decode times start before its presentation times by the reorder delay, which differs between a
    one-frame file (0) and a longer one, so joined decode times collide and the muxer stretches
    some frames to several frame periods. Files without reordering and with evenly timed frames
    join exactly.
    """
    if info.reordered:
        return "its frames are stored out of display order (B-frames), which a stream-copy join cannot time evenly"
    if info.even is False:
        return "its frames do not all last one frame period"
    return None


def first_mismatch(infos: Sequence[MediaInfo]) -> tuple[MediaInfo, str] | None:
    """The first segment that cannot be stream-copied after the first: codec, size, pixel format or
    frame rate differ from the first one's, or (when joining several) B-frames or uneven frame timing."""
    if len(infos) > 1:
        for info in infos:
            why = _joinable(info)
            if why is not None:
                return info, why
    for info in infos[1:]:
        why = _compatible(infos[0], info)
        if why is not None:
            return info, why
    return None


def _check_concat_inputs(
    paths: list[Path],
    audio: Path | str | None,
    audio_offset: float,
    duration: float | None,
    infos: Sequence[MediaInfo] | None,
) -> tuple[Sequence[MediaInfo], Path | None]:
    """Refuse what concat_videos cannot join; return the segments' probes and the audio path."""
    if not paths:
        raise InputError("nothing to concatenate: no video files given")
    if audio_offset < 0:
        raise InputError(f"audio offset must be >= 0 seconds, got {audio_offset}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise InputError(f"duration must be a positive number of seconds, got {duration}")
    if infos is None:
        infos = [probe(p) for p in paths]
    for info in infos:
        if not info.has_video:
            raise InputError(f"{info.path}: no video stream")
    if audio is not None:
        audio = Path(audio)
        if not probe(audio, count_frames=False).has_audio:
            raise InputError(f"{audio}: no audio stream")
    return infos, audio


def _concat_plan(
    infos: Sequence[MediaInfo], reencode: bool | None, duration: float | None
) -> tuple[bool, float, int, int]:
    """(copy the streams?, output fps, frames in all segments, frames to write) for concat_videos."""
    mismatch = first_mismatch(infos)
    if reencode is False and mismatch is not None:
        bad, why = mismatch
        raise InputError(f"{bad.path}: cannot join without re-encoding: {why}; pass --reencode to re-encode")
    copy = not reencode and mismatch is None
    fps = float(infos[0].fps)
    total = sum(int(i.video_frames) for i in infos) if copy else sum(
        round(int(i.video_frames) / float(i.fps) * fps) for i in infos)
    frames = total if duration is None else max(1, min(total, round(duration * fps)))
    return copy, fps, total, frames


def _concat_args(
    list_name: str,
    tmp: Path,
    first: MediaInfo,
    audio: Path | None,
    audio_offset: float,
    duration: float | None,
    copy: bool,
    fps: float,
    total: int,
    frames: int,
) -> list[str]:
    """ffmpeg arguments joining the segments named in the ``list_name`` concat file into ``tmp``."""
    args = ["-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", list_name]
    if audio is not None:
        if audio_offset > 0:
            args += ["-ss", f"{audio_offset:.6f}"]
        # the audio lasts exactly `duration` (or the video's length), never beyond the segments
        audio_seconds = min(duration, total / fps) if duration is not None else frames / fps
        args += ["-t", f"{audio_seconds:.6f}"]
        args += ["-i", str(audio)]
    args += ["-map", "0:v:0"]
    if audio is not None:
        args += ["-map", "1:a:0", "-c:a", "aac", "-b:a", AUDIO_BITRATE]
    if copy:
        args += ["-c:v", "copy"]
    else:
        w, h, rate = first.width, first.height, _rate(fps)
        args += [
            "-vf", f"scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,"
                   "setsar=1,format=yuv420p",
            "-fps_mode", "cfr", "-r", rate, "-c:v", "libx264", "-preset", "medium", "-crf", "17",
        ]
    args += ["-frames:v", str(frames), "-movflags", "+faststart", "-f", "mp4", str(tmp)]
    return args


def concat_videos(
    paths: Sequence[Path | str],
    out: Path | str,
    *,
    audio: Path | str | None = None,
    audio_offset: float = 0.0,
    duration: float | None = None,
    reencode: bool | None = None,
    infos: Sequence[MediaInfo] | None = None,
) -> ConcatResult:
    """Join video files in order (concat demuxer) and optionally mux ``audio`` as AAC.

    ``reencode``: None copies the streams when every segment has the first one's codec, size,
    pixel format and frame rate and re-encodes (libx264 crf 17, first segment's size and rate)
    otherwise; False refuses mismatched segments with InputError; True always re-encodes.
    ``audio_offset`` is the time in the audio file that plays at video time 0 (>= 0).
    ``duration`` trims the output: the video to round(duration * fps) frames and the audio to
    exactly ``duration`` seconds (the output is never longer than the segments or the audio).
    ``infos`` may pass probes of ``paths`` already made (with frame counts).
    """
    paths = [Path(p) for p in paths]
    out = Path(out)
    infos, audio = _check_concat_inputs(paths, audio, audio_offset, duration, infos)
    copy, fps, total, frames = _concat_plan(infos, reencode, duration)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(out)
    list_fd, list_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".concat.txt", dir=out.parent)
    try:
        with os.fdopen(list_fd, "w", encoding="utf-8") as fh:
            fh.write("ffconcat version 1.0\n")
            fh.writelines(_concat_line(p) for p in paths)
        args = _concat_args(list_name, tmp, infos[0], audio, audio_offset, duration, copy, fps, total, frames)
        run_ffmpeg(args, f"writing {out}")
        replace_durably(tmp, out)
    except BaseException:
        _discard(tmp)
        raise
    finally:
        _discard(Path(list_name))
    return ConcatResult(out, copy, frames, fps)


def mux_audio(
    video: Path | str, audio: Path | str, out: Path | str, duration: float | None = None,
    audio_offset: float = 0.0,
) -> ConcatResult:
    """Copy the video stream of ``video`` and add ``audio`` as AAC, trimmed to ``duration`` when given."""
    info = probe(video)
    return concat_videos([Path(video)], out, audio=audio, audio_offset=audio_offset, duration=duration,
                         reencode=False, infos=[info])
