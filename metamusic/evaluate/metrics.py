"""The evaluation's pure metrics: cosines, smoothness, pixel change, jumps, A/V sync, frame clock."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

MIN_AUDIO_WINDOW = 0.25  # seconds: shorter audio windows are widened around their centre
_EPS = 1e-12


def _as_float64(x: Any) -> np.ndarray:
    """A tensor or array-like as a float64 numpy array (on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def cosine(a: Any, b: Any) -> np.ndarray | float:
    """Cosine similarity along the last axis (broadcasting); a float for two vectors."""
    a, b = _as_float64(a), _as_float64(b)
    num = (a * b).sum(axis=-1)
    den = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), _EPS)
    out = num / den
    return float(out) if np.ndim(out) == 0 else out


def text_alignment(frame_embeds: Any, text_embed: Any) -> np.ndarray:
    """Cosine of each frame's CLIP image embedding (N, D) with a CLIP text embedding (D,) -> (N,)."""
    return np.atleast_1d(cosine(frame_embeds, _as_float64(text_embed).reshape(-1)))


def audio_alignment(frame_embeds: Any, audio_embed: Any) -> np.ndarray:
    """Cosine of each frame's CLIP image embedding (N, D) with a Wav2CLIP audio embedding (D,) -> (N,).

    Wav2CLIP is trained to map audio into CLIP ViT-B/32 image space (Wu et al., ICASSP 2022), so
    the two are directly comparable (with other CLIPs the number has no meaning).
    """
    return np.atleast_1d(cosine(frame_embeds, _as_float64(audio_embed).reshape(-1)))


def temporal_smoothness(frame_embeds: Any) -> tuple[float, np.ndarray]:
    """Mean cosine between consecutive frame embeddings (N, D), and the (N - 1,) per-pair values."""
    e = _as_float64(frame_embeds)
    if e.ndim != 2:
        raise ValueError(f"frame embeddings must be (N, D), got shape {e.shape}")
    pairs = np.atleast_1d(cosine(e[:-1], e[1:])) if len(e) > 1 else np.zeros(0)
    return (float(pairs.mean()) if pairs.size else math.nan), pairs


def _mean_abs_change(prev: np.ndarray, cur: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames (H, W, 3), in [0, 1] units."""
    if prev.shape != cur.shape:
        raise ValueError(f"frames differ in shape: {prev.shape} and {cur.shape}")
    return float(np.abs(cur.astype(np.int16) - prev.astype(np.int16)).mean() / 255.0)


def pixel_change(frames: np.ndarray | Iterable[np.ndarray]) -> tuple[float, np.ndarray]:
    """Mean absolute change between consecutive uint8 frames (N, H, W, 3) or a frame iterator, in [0, 1].

    Returns (mean over pairs, (N - 1,) per-pair values); only two frames are held at a time.
    """
    pairs: list[float] = []
    prev: np.ndarray | None = None
    for frame in frames:
        frame = np.asarray(frame)
        if prev is not None:
            pairs.append(_mean_abs_change(prev, frame))
        prev = frame
    arr = np.asarray(pairs, dtype=np.float64)
    return (float(arr.mean()) if arr.size else math.nan), arr


def largest_jump(changes: Any, times: Any) -> tuple[int, float, float]:
    """Where consecutive frames differ most: (pair index i, time of frame i + 1, change value).

    ``changes`` (N - 1,) are per-pair changes (larger = bigger jump, e.g. 1 - cosine), ``times``
    (N,) the frames' times. Returns (-1, nan, nan) when there is no pair.
    """
    c = _as_float64(changes).reshape(-1)
    t = _as_float64(times).reshape(-1)
    if c.size == 0 or np.all(np.isnan(c)):
        return -1, math.nan, math.nan
    if t.size != c.size + 1:
        raise ValueError(f"need one more time than changes, got {t.size} times for {c.size} changes")
    i = int(np.nanargmax(c))
    return i, float(t[i + 1]), float(c[i])


def av_sync(video_duration: float, audio_duration: float, fps: float) -> dict[str, Any]:
    """Video minus audio length in seconds, and whether they agree to within one frame (1 / fps)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be positive, got {fps}")
    diff = float(video_duration) - float(audio_duration)
    return {
        "video_duration": float(video_duration),
        "audio_duration": float(audio_duration),
        "difference": diff,
        "frames": diff * fps,
        "within_one_frame": bool(abs(diff) <= 1.0 / fps + 1e-6),
    }


def frame_clock(pts: Any, fps: float | None = None) -> tuple[np.ndarray, float, float]:
    """(frame times (N,) in seconds, frame rate, video length in seconds) of a video's N frames.

    With ``fps`` (a run folder's configured rate) frame k shows k / fps and the video lasts N / fps.
    Otherwise from the frames' presentation timestamps ``pts`` (N,) in seconds: the rate is one
    over the median interval between consecutive frames (a frame stretched by a join or a long
    last frame does not move it, unlike the container's average rate), and the video ends one
    such interval after its last frame starts.
    """
    t = _as_float64(pts).reshape(-1)
    n = t.size
    if fps is not None:
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be positive, got {fps}")
        return np.arange(n, dtype=np.float64) / fps, float(fps), n / float(fps)
    if n == 0:
        raise ValueError("no frame timestamps")
    steps = np.diff(t)
    steps = steps[steps > 0]
    if steps.size == 0:
        raise ValueError("need two frames with different timestamps to tell the frame rate")
    period = float(np.median(steps))
    return t, 1.0 / period, float(t[-1] + period)


def audio_window(
    start: float, end: float, duration: float, min_length: float = MIN_AUDIO_WINDOW
) -> tuple[float, float]:
    """The audio window for [start, end): widened to ``min_length`` around its centre, kept inside the song."""
    if end - start < min_length:
        mid = 0.5 * (start + end)
        start, end = mid - 0.5 * min_length, mid + 0.5 * min_length
        shift = max(0.0, -start) - max(0.0, end - duration)
        start, end = start + shift, end + shift
    return max(0.0, start), min(duration, end)
