"""The stretches of a video scored on their own: storyboard segments, lyric intervals or fixed windows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

WINDOW_SECONDS = 2.0  # segment length when there are neither a storyboard nor lyrics


@dataclass(frozen=True)
class EvalSegment:
    """A stretch of the video scored on its own: its time span, kind and the lyric it should show."""

    index: int
    start: float
    end: float
    kind: str  # "text" | "audio" | "fused" (storyboard) ; "text" | "audio" (lyric intervals, windows)
    text: str | None  # lyric compared by text alignment; None: no text alignment


def lyric_segments(lyrics: Any, duration: float) -> list[EvalSegment]:
    """Lead-in [0, t_0) (audio), then one text segment per lyric interval [t_i, t_i+1), the last up to ``duration``."""
    starts = [ln.start for ln in lyrics.lines if ln.start < duration]
    texts = [ln.text for ln in lyrics.lines if ln.start < duration]
    plan: list[tuple[float, float, str, str | None]] = []
    if not starts:
        return fixed_windows(duration)
    if starts[0] > 0:
        plan.append((0.0, starts[0], "audio", None))
    for i, (a, text) in enumerate(zip(starts, texts)):
        b = starts[i + 1] if i + 1 < len(starts) else duration
        plan.append((a, b, "text", text))
    return [EvalSegment(i, float(a), float(b), k, t) for i, (a, b, k, t) in enumerate(plan) if b > a]


def fixed_windows(duration: float, length: float = WINDOW_SECONDS) -> list[EvalSegment]:
    """Audio-only windows of ``length`` seconds covering [0, duration] (the last one shorter)."""
    n = max(1, math.ceil(duration / length - 1e-9))
    edges = [min(duration, i * length) for i in range(n)] + [duration]
    return [EvalSegment(i, float(a), float(b), "audio", None) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))
            if b > a]


def _from_storyboard(segments: Sequence[Any], lyrics: Any | None) -> list[EvalSegment]:
    """Storyboard Segments -> EvalSegments; a segment without text takes the lyric active at its middle."""
    from metamusic.song.lyrics import active_line_at

    out = []
    for s in segments:
        text = s.text
        if not text and lyrics is not None:
            k = active_line_at(lyrics, 0.5 * (s.start + s.end))
            text = lyrics.lines[k].text if k is not None else None
        out.append(EvalSegment(int(s.index), float(s.start), float(s.end), str(s.kind), text or None))
    return out


def segment_of_frames(frame_index: np.ndarray, segments: Sequence[EvalSegment], fps: float) -> np.ndarray:
    """Position in ``segments`` owning each frame index k (-1: none): round(start * fps) <= k < round(end * fps)."""
    k = np.asarray(frame_index, dtype=np.int64)
    if not segments:
        return np.full(k.shape, -1, dtype=np.int64)
    order = np.argsort([s.start for s in segments], kind="stable")
    f0 = np.asarray([round(segments[i].start * fps) for i in order], dtype=np.int64)
    f1 = np.asarray([round(segments[i].end * fps) for i in order], dtype=np.int64)
    pos = np.searchsorted(f0, k, side="right") - 1
    inside = (pos >= 0) & (k < f1[np.clip(pos, 0, None)])
    return np.where(inside, order[np.clip(pos, 0, None)], -1)
