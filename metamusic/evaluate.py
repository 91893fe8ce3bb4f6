"""How well a rendered music video follows its song: alignment and smoothness metrics.

For every evaluated frame (every ``every``-th frame of the video, streamed, never all in RAM)
the full frame is resized to CLIP's input size (no crop, bicubic with antialias) and embedded
with CLIP's image encoder. From the (N, D) embeddings and the per-pair pixel changes:

- text alignment: cosine between a frame's CLIP embedding and the CLIP text embedding of the
  lyric active in its segment (segments without a lyric have none);
- audio alignment: cosine between a frame's CLIP embedding and the Wav2CLIP embedding of its
  segment's audio (Wav2CLIP maps audio into CLIP ViT-B/32 image space);
- smoothness: cosine between consecutive evaluated frames' embeddings (1 = no change);
- pixel change: mean absolute difference of consecutive evaluated frames, in [0, 1] units;
- the largest jump (where the embedding moves most from one frame to the next);
- A/V sync: video stream length against the song's length.

Frame times come from the frames' own timestamps (:func:`frame_clock`), not from the container's
average frame rate, which a frame stretched by a muxer or a join skews; when a run folder is
scored, from its configured ``--fps`` (frame k shows k / fps, the renderer's own rule).

Segments come from a run folder's ``storyboard.yaml``; without one, from the lyrics (a lead-in
before the first line, then [t_i, t_i+1), the last line up to the song's end), or fixed 2 s
windows without lyrics. A frame at time t, in slot k = round(t * fps), belongs to the segment with
round(start * fps) <= k < round(end * fps), the renderer's own rule (timeline.frame_schedule).
A pair of consecutive evaluated frames belongs to the segment of its second frame.

``python evaluate.py VIDEO -ap SONG [-lyr LYRICS] -o OUTDIR`` or ``python evaluate.py RUN_DIR -o
OUTDIR`` write ``metrics.csv`` (one row per segment), ``summary.json`` and ``plot.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from metamusic.errors import InputError

log = logging.getLogger("metamusic")

__all__ = [
    "EvalSegment",
    "EvaluationResult",
    "SegmentMetrics",
    "audio_alignment",
    "audio_window",
    "av_sync",
    "cosine",
    "evaluate",
    "fixed_windows",
    "frame_clock",
    "largest_jump",
    "lyric_segments",
    "main",
    "pixel_change",
    "segment_of_frames",
    "temporal_smoothness",
    "text_alignment",
    "write_report",
]

MIN_AUDIO_WINDOW = 0.25  # seconds: shorter audio windows are widened around their centre
WINDOW_SECONDS = 2.0  # segment length when there are neither a storyboard nor lyrics
CSV_COLUMNS = ("index", "start", "end", "kind", "text", "n_frames", "text_alignment", "audio_alignment",
               "smoothness", "pixel_change")
_EPS = 1e-12


# ---------------------------------------------------------------------------------------------
# Pure metrics
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


@dataclass
class SegmentMetrics:
    """Scores of one segment (nan where a score does not apply or no frame was evaluated)."""

    index: int
    start: float
    end: float
    kind: str
    text: str | None
    n_frames: int
    text_alignment: float
    audio_alignment: float
    smoothness: float
    pixel_change: float


@dataclass
class EvaluationResult:
    """Everything the report needs: per-frame series, per-segment scores, overall numbers."""

    video: Path
    audio: Path | None
    fps: float
    video_frames: int  # frames in the video stream
    every: int
    clip_model: str
    segment_source: str  # "storyboard" | "lyrics" | "windows"
    frame_index: np.ndarray  # (M,) video frame numbers evaluated
    frame_time: np.ndarray  # (M,) seconds
    text_scores: np.ndarray  # (M,) nan where the frame's segment has no lyric
    audio_scores: np.ndarray  # (M,) nan outside every segment
    pair_cosine: np.ndarray  # (M - 1,) consecutive embedding cosines
    pair_pixel: np.ndarray  # (M - 1,) consecutive mean abs pixel changes in [0, 1]
    segments: list[SegmentMetrics]
    overall: dict[str, float]
    largest_jump: dict[str, Any]
    largest_pixel_jump: dict[str, Any]
    sync: dict[str, Any]
    lyric_marks: list[tuple[float, str]] = field(default_factory=list)
    beats: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (nan -> None)."""
        return _json_safe({
            "video": str(self.video),
            "audio": None if self.audio is None else str(self.audio),
            "clip_model": self.clip_model,
            "fps": self.fps,
            "video_frames": self.video_frames,
            "evaluated_frames": int(len(self.frame_index)),
            "every": self.every,
            "segment_source": self.segment_source,
            "segments": len(self.segments),
            "overall": self.overall,
            "largest_jump": self.largest_jump,
            "largest_pixel_jump": self.largest_pixel_jump,
            "av_sync": self.sync,
        })


def _json_safe(x: Any) -> Any:
    """Nested data with numpy scalars as Python numbers and nan/inf as None."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _nanmean(x: np.ndarray) -> float:
    """Mean ignoring nan; nan when nothing is left."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def _clip_input(frames: list[np.ndarray], resolution: int, device: Any) -> Any:
    """uint8 frames [(H, W, 3)] -> (B, 3, R, R) in [0, 1]: the full frame resized (bicubic, antialias), no crop."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.stack(frames)).to(device)  # (B, H, W, 3) uint8
    x = x.permute(0, 3, 1, 2).float().div(255.0)  # (B, 3, H, W)
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", align_corners=False, antialias=True)
    return x.clamp(0.0, 1.0)  # (B, 3, R, R)


def _embed_video(
    frames: Iterator[np.ndarray], perceptor: Any, every: int, batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stream frames; return evaluated frame numbers (M,), CLIP embeddings (M, D) and pixel changes (M - 1,)."""
    import torch

    indices: list[int] = []
    chunks: list[np.ndarray] = []
    pixels: list[float] = []
    pending: list[np.ndarray] = []
    prev: np.ndarray | None = None

    def flush() -> None:
        with torch.no_grad():
            x = _clip_input(pending, perceptor.input_resolution, perceptor.device)  # (B, 3, R, R)
            chunks.append(perceptor.encode_image(perceptor.normalize(x)).float().cpu().numpy())  # (B, D)
        pending.clear()

    for k, frame in enumerate(frames):
        if k % every:
            continue
        if prev is not None:
            pixels.append(_mean_abs_change(prev, frame))
        prev = frame
        indices.append(k)
        pending.append(frame)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    embeds = np.concatenate(chunks) if chunks else np.zeros((0, perceptor.embed_dim), dtype=np.float32)
    return np.asarray(indices, dtype=np.int64), embeds, np.asarray(pixels, dtype=np.float64)


def _embed_texts(perceptor: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """CLIP text embedding (D,) of each distinct text."""
    import torch

    unique = sorted(set(texts))
    if not unique:
        return {}
    with torch.no_grad():
        e = perceptor.encode_text(unique).float().cpu().numpy()  # (T, D)
    return dict(zip(unique, e))


def _embed_audio(wav2clip: Any, audio: Any, start: float, end: float, device: Any) -> np.ndarray:
    """Wav2CLIP embedding (512,) of the song between ``start`` and ``end`` (one clip per call)."""
    import torch

    a, b = audio_window(start, end, audio.duration)
    sr = audio.sample_rate
    i0, i1 = max(0, int(round(a * sr))), min(len(audio.samples), int(round(b * sr)))
    clip = torch.from_numpy(np.ascontiguousarray(audio.samples[i0:i1], dtype=np.float32)).to(device)
    with torch.no_grad():
        return wav2clip(clip.unsqueeze(0)).float().cpu().numpy()[0]  # (512,)


def _load_inputs(video: Any, audio: Any, lyrics: Any) -> tuple[Path, Any, Any]:
    """Paths -> (video path, Audio at 16 kHz, Lyrics or None); objects pass through."""
    from metamusic.song.audio import Audio, load_audio
    from metamusic.song.lyrics import Lyrics, clip_to_duration, read_lyrics

    if not isinstance(audio, Audio):
        audio = load_audio(audio, sample_rate=16000)
    elif audio.sample_rate != 16000:
        raise InputError(f"{audio.path}: Wav2CLIP needs 16 kHz audio, got {audio.sample_rate} Hz")
    if lyrics is not None and not isinstance(lyrics, Lyrics):
        lyrics = read_lyrics(lyrics)
    if lyrics is not None:
        lyrics = clip_to_duration(lyrics, audio.duration)
    return Path(video), audio, lyrics


def evaluate(
    video: str | Path,
    audio: Any,
    lyrics: Any,
    perceptor: Any,
    wav2clip: Any,
    segments: Sequence[Any] | None = None,
    every: int = 1,
    batch: int = 16,
    fps: float | None = None,
) -> EvaluationResult:
    """Score ``video`` against its song (Audio at 16 kHz or a path) and lyrics (Lyrics, a path or None).

    ``segments``: storyboard Segments of the run (else lyric intervals or 2 s windows).
    ``fps``: the run's configured frame rate (frame k at k / fps); else the frames' timestamps.
    """
    from metamusic.media.video import frame_timing, probe, read_frames
    from metamusic.song.timeline import detect_beats

    if every < 1 or batch < 1:
        raise InputError(f"--every and --batch must be >= 1, got {every} and {batch}")
    # 1. Inputs and the segmentation.
    video, audio, lyrics = _load_inputs(video, audio, lyrics)
    info = probe(video)
    if not info.has_video or not info.fps or not info.video_frames:
        raise InputError(f"{video}: no video frames to evaluate")
    if fps is None and info.video_frames > 1:
        all_times, fps, video_seconds = frame_clock(frame_timing(video).times())
    else:  # a run's configured rate; a one-frame video has no interval to measure
        all_times, fps, video_seconds = frame_clock(np.zeros(info.video_frames), fps or float(info.fps))
    if segments:
        evals, source = _from_storyboard(segments, lyrics), "storyboard"
    elif lyrics is not None and lyrics.lines:
        evals, source = lyric_segments(lyrics, audio.duration), "lyrics"
    else:
        evals, source = fixed_windows(audio.duration), "windows"

    # 2. Stream the video: CLIP embeddings (M, D) and pixel changes (M - 1,).
    index, embeds, pair_pixel = _embed_video(read_frames(video), perceptor, every, batch)
    if len(index) == 0:
        raise InputError(f"{video}: no frame could be decoded")
    index = index[index < len(all_times)]  # a decoder never yields more frames than packets; be safe
    embeds, pair_pixel = embeds[: len(index)], pair_pixel[: max(0, len(index) - 1)]
    times = all_times[index]  # (M,)
    slot = np.rint(times * fps).astype(np.int64)  # (M,) the frame slot each frame fills at the video's rate
    owner = segment_of_frames(slot, evals, fps)  # (M,)

    # 3. Targets: one text embedding per lyric, one Wav2CLIP embedding per segment.
    text_e = _embed_texts(perceptor, [s.text for s in evals if s.text])
    audio_e = [_embed_audio(wav2clip, audio, s.start, s.end, perceptor.device) for s in evals]

    # 4. Per-frame and per-pair scores.
    text_scores = np.full(len(index), math.nan)
    audio_scores = np.full(len(index), math.nan)
    for j, seg in enumerate(evals):
        mask = owner == j
        if not mask.any():
            continue
        audio_scores[mask] = audio_alignment(embeds[mask], audio_e[j])
        if seg.text:
            text_scores[mask] = text_alignment(embeds[mask], text_e[seg.text])
    _, pair_cos = temporal_smoothness(embeds)
    pair_owner = owner[1:]  # a pair belongs to the segment of its second frame

    # 5. Per-segment and overall numbers.
    rows = []
    for j, seg in enumerate(evals):
        mask, pmask = owner == j, pair_owner == j
        rows.append(SegmentMetrics(
            seg.index, seg.start, seg.end, seg.kind, seg.text, int(mask.sum()),
            _nanmean(text_scores[mask]), _nanmean(audio_scores[mask]),
            _nanmean(pair_cos[pmask]), _nanmean(pair_pixel[pmask]),
        ))
    overall = {
        "text_alignment": _nanmean(text_scores),
        "audio_alignment": _nanmean(audio_scores),
        "smoothness": _nanmean(pair_cos),
        "pixel_change": _nanmean(pair_pixel),
    }

    # 6. Largest jumps and A/V sync.
    def jump(changes: np.ndarray) -> dict[str, Any]:
        i, t, v = largest_jump(changes, times)
        frame = int(index[i + 1]) if i >= 0 else None
        seg = int(owner[i + 1]) if i >= 0 and owner[i + 1] >= 0 else None
        return {"frame": frame, "time": t, "value": v,
                "segment": evals[seg].index if seg is not None else None}

    lyric_marks = [(ln.start, ln.text) for ln in lyrics.lines] if lyrics is not None else []
    return EvaluationResult(
        video=video, audio=audio.path, fps=fps, video_frames=int(info.video_frames), every=every,
        clip_model=str(getattr(perceptor, "name", "")), segment_source=source,
        frame_index=index, frame_time=times, text_scores=text_scores, audio_scores=audio_scores,
        pair_cosine=pair_cos, pair_pixel=pair_pixel, segments=rows, overall=overall,
        largest_jump={**jump(1.0 - pair_cos), "measure": "1 - cosine of consecutive CLIP embeddings"},
        largest_pixel_jump={**jump(pair_pixel), "measure": "mean absolute pixel change"},
        sync=av_sync(video_seconds, audio.duration, fps),
        lyric_marks=lyric_marks, beats=np.asarray(detect_beats(audio), dtype=np.float64),
    )


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _csv_number(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6f}"


def metrics_csv(result: EvaluationResult) -> str:
    """The CSV text: one row per segment (empty cells where a score does not apply)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in result.segments:
        writer.writerow([s.index, f"{s.start:.3f}", f"{s.end:.3f}", s.kind, s.text or "", s.n_frames,
                         _csv_number(s.text_alignment), _csv_number(s.audio_alignment),
                         _csv_number(s.smoothness), _csv_number(s.pixel_change)])
    return buf.getvalue()


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def plot_figure(result: EvaluationResult):
    """The report's figure: alignment, smoothness and pixel change over time, each on its own axis
    scaled to its data, with lyric lines (dashed, labelled) and beat ticks. Legends sit right of
    the axes, so they never cover a curve or the largest-jump marker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, mid, low = fig.subplots(3, 1, sharex=True, height_ratios=(1.3, 1, 1))
    t, pt = result.frame_time, result.frame_time[1:]
    top.plot(t, result.text_scores, color="tab:blue", lw=1.2, label="text alignment")
    top.plot(t, result.audio_scores, color="tab:orange", lw=1.2, label="audio alignment")
    top.set_ylabel("cosine with target")
    mid.plot(pt, result.pair_cosine, color="tab:green", lw=1.2, label="smoothness\n(consecutive cosine)")
    jump = result.largest_jump
    if jump.get("frame") is not None:
        mid.plot([jump["time"]], [1.0 - jump["value"]], "rx", ms=9, mew=2, label="largest jump")
    mid.set_ylabel("cosine")
    low.plot(pt, result.pair_pixel, color="tab:purple", lw=1.0, label="pixel change\n(mean |difference|)")
    low.set_ylabel("pixel change")
    low.set_xlabel("time (s)")
    for ax in (top, mid, low):
        for when, _ in result.lyric_marks:
            ax.axvline(when, color="0.55", lw=0.8, ls="--")
        if len(result.beats):
            # beat ticks along the bottom edge: x in data units, y in axes units
            ax.vlines(result.beats, 0.0, 0.04, transform=ax.get_xaxis_transform(), color="k", lw=0.8)
        ax.grid(alpha=0.25)
        ax.margins(y=0.08)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    for when, text in result.lyric_marks:
        top.text(when, 0.98, " " + _short(text), transform=top.get_xaxis_transform(), rotation=90,
                 va="top", ha="left", fontsize=7, color="0.3", clip_on=True)
    end = max(float(t[-1]) if len(t) else 0.0, result.sync["audio_duration"])
    top.set_xlim(0.0, max(end, 1e-3))
    fig.suptitle(f"{result.video.name}: beats are ticks at the bottom, lyric lines dashed", fontsize=10)
    return fig


def _plot(result: EvaluationResult, path: Path) -> None:
    """Write :func:`plot_figure` to ``path`` as a PNG, atomically."""
    from metamusic.files import atomic_path

    fig = plot_figure(result)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def write_report(result: EvaluationResult, outdir: str | Path) -> dict[str, Path]:
    """Write ``metrics.csv``, ``summary.json`` and ``plot.png`` into ``outdir`` (each atomically)."""
    from metamusic.files import atomic_write_text

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": outdir / "metrics.csv", "json": outdir / "summary.json", "plot": outdir / "plot.png"}
    atomic_write_text(paths["csv"], metrics_csv(result))
    atomic_write_text(paths["json"], json.dumps(result.summary(), indent=2, allow_nan=False) + "\n")
    _plot(result, paths["plot"])
    return paths


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from metamusic.helpformat import make_parser

    p = make_parser(
        "evaluate.py",
        "Score a music video: CLIP alignment with its lyrics and audio, smoothness, A/V sync.\n"
        "Writes metrics.csv (one row per segment), summary.json and plot.png.",
        examples=("{prog} outputs/song.run", "{prog} outputs/song.mp4 -ap song.mp3 -lyr lyrics/song.csv -o eval/song"),
    )
    p.add_argument("video", help="the rendered video (mp4), or a run folder (config.yaml, storyboard.yaml)")
    p.add_argument("-ap", "--audio_prompt", help="the song (default: the run folder's, else the video's own sound)")
    p.add_argument("-lyr", "--lyrics", help="timed lyric file (default: the run folder's)")
    p.add_argument("--lyrics_format", choices=["m2v-csv", "plain", "screenplay-csv", "lrc", "srt"])
    p.add_argument("-m", "--clip_model", help="CLIP name (ViT-B/32, ViT-B/16, RN50) or a file")
    p.add_argument("--wav2clip_checkpoint", help="Wav2CLIP.pt")
    # Accepted so the model flags of generate.py can be passed as they are; scoring needs no VQGAN.
    p.add_argument("-conf", "--vqgan_config", help="ignored (accepted for the same flags as generate.py)")
    p.add_argument("-ckpt", "--vqgan_checkpoint", help="ignored (accepted for the same flags as generate.py)")
    p.add_argument("--checkpoints_dir", help="folder where CLIP names are looked up")
    p.add_argument("--trust_torchscript", action="store_true", default=None,
                   help="load a CLIP TorchScript archive whose SHA-256 is not a published one")
    p.add_argument("-gid", "--gpu_id", help="GPU index to use, or 'cpu'")
    p.add_argument("-cd", "--cuda_device", help="device name (cuda:0, cpu)")
    p.add_argument("--every", type=int, default=1, help="evaluate every Nth frame (default: 1)")
    p.add_argument("--batch", type=int, default=16, help="frames per CLIP batch (default: 16)")
    p.add_argument("-o", "--output", help="output folder (default: <video>.eval beside the video)")
    return p


@dataclass
class _Plan:
    """What the command line resolved: files, models, segments, output folder."""

    video: Path
    audio: Path
    lyrics: Path | None
    lyrics_format: str | None
    models: Any  # metamusic.config.ModelConfig
    segments: list[Any] | None
    outdir: Path
    fps: float | None = None  # a run folder's configured frame rate


def _resolve(args: argparse.Namespace) -> _Plan:
    """Flags (and a run folder's config.yaml / storyboard.yaml) -> a _Plan; flags win over the folder."""
    from metamusic.config import Config, ModelConfig

    target = Path(args.video).expanduser()
    models = ModelConfig()
    audio, lyrics, fmt, segments, fps = args.audio_prompt, args.lyrics, args.lyrics_format, None, None
    if target.is_dir():
        from metamusic.runfolder import RunFolder

        run = RunFolder(target)
        if not run.config_path.is_file():
            raise InputError(f"{target}: not a run folder (no config.yaml) and not a video file")
        config = Config.load(run.config_path)
        models = config.models
        o = config.output  # the final video's rate: -ofps when it was motion-interpolated
        fps = float(o.output_video_fps if o.output_video_fps > 9 else o.fps)
        audio = audio or config.music.audio
        if lyrics is None:
            lyrics, fmt = config.music.lyrics, fmt or config.music.lyrics_format
        if run.storyboard_path.is_file():
            segments = run.read_storyboard()
        out = Path(config.output.output).expanduser()
        video = out if out.suffix.lower() == ".mp4" else out.with_suffix(".mp4")
        if not video.is_file():
            beside = target.parent / (target.name[: -len(".run")] + ".mp4") if target.name.endswith(".run") else None
            if beside is None or not beside.is_file():
                raise InputError(f"{video}: the run's final video does not exist (render it, or join its "
                                 "segments with combine_mp4.py, then pass the video)")
            video = beside
        default_out = target / "evaluation"
    else:
        video = target
        if not video.exists():
            raise InputError(f"{video}: no such video file")
        default_out = video.with_name(video.stem + ".eval")
    for name in ("clip_model", "wav2clip_checkpoint", "checkpoints_dir", "trust_torchscript"):
        if getattr(args, name) is not None:
            setattr(models, name, getattr(args, name))
    if audio is None:
        audio = str(video)  # the video's own sound track (checked to exist below)
        log.info("no -ap given: using the sound track of %s", video)
    return _Plan(video, Path(audio).expanduser(), Path(lyrics).expanduser() if lyrics else None, fmt, models,
                 segments, Path(args.output).expanduser() if args.output else default_out, fps)


def main(argv: Sequence[str] | None = None) -> int:
    """``evaluate.py``: validate inputs, load CLIP and Wav2CLIP, score the video, write the report."""
    from metamusic.devices import resolve_device
    from metamusic.media.video import probe
    from metamusic.models.checkpoint_io import check_model_file
    from metamusic.models.clip import resolve_clip_path
    from metamusic.song.audio import load_audio, probe_audio
    from metamusic.song.lyrics import clip_to_duration, read_lyrics

    args = build_parser().parse_args(argv)
    if args.every < 1:
        raise InputError(f"--every {args.every}: must be >= 1")
    if args.batch < 1:
        raise InputError(f"--batch {args.batch}: must be >= 1")

    # 1. Validate every input before any model loads.
    plan = _resolve(args)
    info = probe(plan.video)
    if not info.has_video or not info.video_frames:
        raise InputError(f"{plan.video}: no video stream to evaluate")
    if plan.audio == plan.video and not info.has_audio:
        raise InputError(f"{plan.video}: the video has no sound track; pass the song with -ap SONG")
    probe_audio(plan.audio)
    audio = load_audio(plan.audio, sample_rate=16000)
    lyrics = None
    if plan.lyrics is not None:
        lyrics = clip_to_duration(read_lyrics(plan.lyrics, plan.lyrics_format), audio.duration)
    device = resolve_device(args.gpu_id, args.cuda_device)
    hint = "download it with: bash download_models.sh"
    m = plan.models
    check_model_file(resolve_clip_path(m.clip_model, m.checkpoints_dir), "CLIP model", f"{hint} clip_vit_b32")
    check_model_file(m.wav2clip_checkpoint, "Wav2CLIP checkpoint", f"{hint} wav2clip")
    try:
        plan.outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{plan.outdir}: cannot create the output folder ({exc.strerror})") from None

    # 2. Models.
    from metamusic.models.clip import load_clip
    from metamusic.models.wav2clip_loader import load_wav2clip

    perceptor = load_clip(m.clip_model, device, checkpoints_dir=m.checkpoints_dir,
                          trust_torchscript=bool(m.trust_torchscript))
    wav2clip = load_wav2clip(m.wav2clip_checkpoint, device)

    # 3. Score and report.
    result = evaluate(plan.video, audio, lyrics, perceptor, wav2clip, segments=plan.segments,
                      every=args.every, batch=args.batch, fps=plan.fps)
    paths = write_report(result, plan.outdir)
    o, s = result.overall, result.sync
    fmt = lambda x: "n/a" if not math.isfinite(x) else f"{x:.4f}"  # noqa: E731
    print(f"{plan.video}: {len(result.frame_index)} frames, {len(result.segments)} segments ({result.segment_source})")
    print(f"text alignment {fmt(o['text_alignment'])}  audio alignment {fmt(o['audio_alignment'])}  "
          f"smoothness {fmt(o['smoothness'])}  pixel change {fmt(o['pixel_change'])}")
    print(f"A/V: video {s['video_duration']:.3f} s, audio {s['audio_duration']:.3f} s "
          f"({'in sync' if s['within_one_frame'] else 'OUT OF SYNC'}, {s['difference']:+.3f} s)")
    print(f"wrote {paths['csv']}, {paths['json']}, {paths['plot']}")
    return 0
