"""Reading the song: any common audio format, decoded to mono float32 at a chosen rate.

Every format goes through the ffmpeg binary bundled with imageio-ffmpeg (wav, flac, ogg, mp3,
m4a/aac, opus, the audio track of a video, ...), so all formats are decoded and resampled by the
same code. The first audio stream is used. Channels are averaged to mono (ffmpeg's rematrix
normalised so that the mix never exceeds full scale: stereo becomes exactly ``(L + R) / 2``,
like ``librosa.load(mono=True)`` in the original Music2Video).

Bad files raise :class:`metamusic.errors.InputError` with one line naming the file: missing,
not a regular file, unreadable, empty, not audio ffmpeg can decode (text, images, a video
without sound), or decoding to no samples at all. A file that decodes only partly (truncated)
loads what decodes and logs a warning. Silence is valid audio.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metamusic.errors import InputError
from metamusic.media.ffmpeg import run_ffmpeg

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Audio:
    """A mono signal in [-1, 1]."""

    samples: np.ndarray  # (N,) float32
    sample_rate: int
    path: Path | None = None

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class AudioInfo:
    """What a cheap look at an audio file's header tells (its first audio stream)."""

    duration: float  # seconds (container duration; decoded length when the header has none)
    sample_rate: int  # Hz, as stored
    channels: int
    codec: str  # ffmpeg's codec name, e.g. "pcm_s16le", "mp3", "aac", "vorbis", "flac"


# --------------------------------------------------------------------------- ffmpeg plumbing

_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_AUDIO_STREAM_RE = re.compile(r"Stream #\d+:\d+\S*: Audio: ([A-Za-z0-9_]+)[^,\n]*, (\d+) Hz, ([^,\n]+)")
_TIME_RE = re.compile(r"time=\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "downmix": 2, "binaural": 2, "quad": 4, "hexagonal": 6,
    "octagonal": 8, "cube": 8, "hexadecagonal": 16,
}


def _input_args(path: Path) -> list[str]:
    """ffmpeg input arguments that read exactly this local file (no URL, pipe or option parsing)."""
    return ["-protocol_whitelist", "file", "-i", "file:" + os.path.abspath(path)]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    """Run ffmpeg with an argument list (never a shell string), capturing stdout and stderr as bytes."""
    return run_ffmpeg(args, check=False, text=False)


def _check_file(path: Path) -> None:
    """Raise InputError unless ``path`` is a readable, non-empty regular file."""
    if not path.exists():
        raise InputError(f"{path}: no such audio file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (expected an audio file)")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError:
        raise InputError(f"{path}: cannot read the audio file (permission denied)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the audio file ({exc.strerror or exc})") from None
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes), not audio")


def _ffmpeg_failure(path: Path, stderr: str) -> InputError:
    """The InputError describing why ffmpeg could not open or decode ``path``."""
    if "matches no streams" in stderr or "does not contain any stream" in stderr:
        return InputError(f"{path}: not an audio file ffmpeg can decode (it has no audio stream)")
    if "Permission denied" in stderr:
        return InputError(f"{path}: cannot read the audio file (permission denied)")
    if "Invalid data found" in stderr or "Error opening input" in stderr:
        return InputError(f"{path}: not an audio file ffmpeg can decode")
    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "unknown error")
    return InputError(f"{path}: ffmpeg could not decode it ({last})")


def _check_rate(sample_rate: int) -> int:
    """The sample rate as a positive int, else InputError."""
    is_int = isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool)
    if not is_int or sample_rate <= 0:
        raise InputError(
            f"audio sample rate must be a positive whole number of Hz, got {sample_rate!r}"
        )
    return int(sample_rate)


# --------------------------------------------------------------------------- public API


def load_audio(path: str | Path, sample_rate: int = 16000) -> Audio:
    """The first audio stream of any file ffmpeg reads, as mono float32 at ``sample_rate`` Hz."""
    path = Path(path)
    sample_rate = _check_rate(sample_rate)
    _check_file(path)
    result = _run(
        ["-nostats", "-loglevel", "level+info", *_input_args(path), "-map", "0:a:0", "-vn", "-ac", "1",
         "-rematrix_maxval", "1.0", "-ar", str(sample_rate), "-f", "f32le", "-"]
    )
    stderr = result.stderr.decode("utf-8", "replace")
    if result.returncode != 0 and not result.stdout:
        raise _ffmpeg_failure(path, stderr)
    samples = np.frombuffer(result.stdout, dtype="<f4", count=len(result.stdout) // 4).astype(np.float32)
    if samples.size == 0:
        raise InputError(f"{path}: no audio could be decoded (zero-length, truncated or corrupt file)")
    errors = [ln.strip() for ln in stderr.splitlines() if "[error]" in ln or "[fatal]" in ln]
    if result.returncode != 0 or errors:
        first = errors[0] if errors else f"exit status {result.returncode}"
        log.warning("%s: decoded with errors, the file may be truncated or corrupt (%s)", path, first)
    header = _DURATION_RE.search(stderr)
    decoded = samples.size / sample_rate
    if header and decoded < 0.9 * _hms(*header.groups()) - 0.1:
        log.warning(
            "%s: decoded only %.2f s of the %.2f s its header announces (truncated file?)",
            path, decoded, _hms(*header.groups()),
        )
    if not np.all(np.isfinite(samples)):
        raise InputError(f"{path}: decoded audio contains NaN or infinite samples (corrupt float audio?)")
    return Audio(samples=samples, sample_rate=sample_rate, path=path)


def _hms(h: str, m: str, s: str) -> float:
    """Seconds from ffmpeg's ``HH:MM:SS.ss`` pieces."""
    return int(h) * 3600 + int(m) * 60 + float(s)


def _layout_channels(layout: str) -> int:
    """Channel count of an ffmpeg channel-layout name ("stereo", "5.1(side)", "6 channels")."""
    layout = layout.strip()
    if m := re.fullmatch(r"(\d+) channels.*", layout):
        return int(m.group(1))
    name = layout.split("(")[0].strip()
    if name in _LAYOUT_CHANNELS:
        return _LAYOUT_CHANNELS[name]
    if re.fullmatch(r"\d+(?:\.\d+){1,2}", name):  # "5.1" -> 6, "7.1.4" -> 12, "22.2" -> 24
        return sum(int(p) for p in name.split("."))
    return 0


def _decoded_duration(path: Path) -> float | None:
    """Duration found by decoding the first audio stream to nowhere (for headers without one)."""
    result = _run(["-loglevel", "info", "-stats", *_input_args(path), "-map", "0:a:0", "-f", "null", "-"])
    times = _TIME_RE.findall(result.stderr.decode("utf-8", "replace"))
    if result.returncode != 0 or not times:
        return None
    return _hms(*times[-1])


def probe_audio(path: str | Path) -> AudioInfo:
    """Duration, rate, channels and codec of a file's first audio stream, from ffmpeg's header read."""
    path = Path(path)
    _check_file(path)
    result = _run(["-loglevel", "info", *_input_args(path)])  # no output given: ffmpeg only probes
    stderr = result.stderr.decode("utf-8", "replace")
    stream = _AUDIO_STREAM_RE.search(stderr)
    if stream is None:
        if "Input #0" in stderr:  # opened, but no audio inside (an image, a silent video, text art)
            raise InputError(f"{path}: not an audio file ffmpeg can decode (it has no audio stream)")
        raise _ffmpeg_failure(path, stderr)
    codec, rate, layout = stream.group(1), int(stream.group(2)), stream.group(3)
    found = _DURATION_RE.search(stderr)
    duration = _hms(*found.groups()) if found else None
    if duration is None:  # "Duration: N/A": decode once to measure it
        duration = _decoded_duration(path)
    if duration is None:
        raise InputError(f"{path}: cannot tell the audio's duration (corrupt file?)")
    if duration <= 0:
        raise InputError(f"{path}: the audio has zero length")
    return AudioInfo(duration=duration, sample_rate=rate, channels=_layout_channels(layout), codec=codec)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write (N,) or (N, C) samples in [-1, 1] to a WAV file atomically (temp file, then rename)."""
    import soundfile

    path = Path(path)
    sample_rate = _check_rate(sample_rate)
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim not in (1, 2) or data.shape[0] == 0:
        raise ValueError(f"samples must be a non-empty (N,) or (N, C) array, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("samples contain NaN or infinite values")
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    from metamusic.files import atomic_path

    with atomic_path(path, suffix=".wav") as tmp:
        soundfile.write(str(tmp), data, sample_rate, subtype=subtype, format="WAV")
    return path


_PROGRESSIONS = ((0, 7, 9, 5), (0, 5, 7, 0), (9, 5, 0, 7), (0, 9, 5, 7))  # I-V-vi-IV & co (semitones)


def _tone(freq: float, t: np.ndarray) -> np.ndarray:
    """A soft tone: a sine plus a quieter octave, for the pad and the melody."""
    return np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)


def synth_song(duration: float, sample_rate: int = 16000, bpm: float = 120, seed: int = 0) -> np.ndarray:
    """A deterministic test song (N,) float32: a kick on every beat, a chord pad per bar, a melody."""
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if not (math.isfinite(bpm) and bpm > 0):
        raise ValueError(f"bpm must be positive, got {bpm!r}")
    sample_rate = _check_rate(sample_rate)
    rng = np.random.default_rng(seed)
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate  # (N,)
    beat = 60.0 / bpm
    bar = 4 * beat
    song = np.zeros(n)

    # 1. Kick on every beat: a pitch-dropping sine (150 -> 50 Hz) with a fast decay, plus a click.
    click = rng.uniform(-1, 1, int(0.004 * sample_rate))
    for k in range(int(math.ceil(duration / beat))):
        i0 = int(round(k * beat * sample_rate))
        tau = t[i0 : i0 + int(0.25 * sample_rate)] - t[i0]
        phase = 2 * np.pi * (50 * tau + 100 * 0.03 * (1 - np.exp(-tau / 0.03)))
        song[i0 : i0 + len(tau)] += 0.9 * np.exp(-tau / 0.06) * np.sin(phase)
        song[i0 : i0 + len(click[: n - i0])] += 0.3 * click[: n - i0]

    # 2. Chord pad, one triad per bar from a seeded progression, faded in and out per bar.
    key = 220.0 * 2 ** (rng.integers(0, 5) / 12)  # A3 .. C#4
    progression = _PROGRESSIONS[rng.integers(len(_PROGRESSIONS))]
    for b in range(int(math.ceil(duration / bar))):
        i0, i1 = int(round(b * bar * sample_rate)), min(n, int(round((b + 1) * bar * sample_rate)))
        root = progression[b % len(progression)]
        seg = t[i0:i1] - t[i0]
        fade = np.minimum(1.0, np.minimum(seg, seg[-1] - seg) / 0.02)
        chord = sum(_tone(key * 2 ** ((root + step) / 12), seg) for step in (0, 4, 7))
        song[i0:i1] += 0.06 * fade * chord

        # 3. Melody: one chord tone an octave up per beat, plucked (decaying) envelope.
        for k in range(4):
            j0 = int(round((b * bar + k * beat) * sample_rate))
            j1 = min(n, int(round((b * bar + (k + 1) * beat) * sample_rate)))
            if j0 >= j1:
                break
            step = (0, 4, 7, 12)[rng.integers(4)]
            tau = t[j0:j1] - t[j0]
            env = np.exp(-tau / (0.4 * beat)) * np.minimum(1.0, tau / 0.005)
            song[j0:j1] += 0.15 * env * _tone(2 * key * 2 ** ((root + step) / 12), tau)

    return (0.8 * song / max(1e-9, np.abs(song).max())).astype(np.float32)
