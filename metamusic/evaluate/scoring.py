"""Scoring a video: stream its frames through CLIP, embed the targets, and score every segment."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from metamusic.errors import InputError
from metamusic.evaluate.metrics import (
    _mean_abs_change,
    audio_alignment,
    audio_window,
    av_sync,
    frame_clock,
    largest_jump,
    temporal_smoothness,
    text_alignment,
)
from metamusic.evaluate.segments import (
    _from_storyboard,
    fixed_windows,
    lyric_segments,
    segment_of_frames,
)


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
    render: dict[str, Any] | None = None  # a run folder's run.json totals (steps, frames, seconds)

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
            **({} if self.render is None else {"render": self.render}),
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


def _probe_video(video: Path) -> Any:
    """ffprobe facts of ``video``; InputError when it has no video frames."""
    from metamusic.media.video import probe

    info = probe(video)
    if not info.has_video or not info.fps or not info.video_frames:
        raise InputError(f"{video}: no video frames to evaluate")
    return info


def _frame_times(video: Path, info: Any, fps: float | None) -> tuple[np.ndarray, float, float]:
    """(all frame times (N,), frame rate, video seconds): the run's rate if given, else the frames' timestamps."""
    from metamusic.media.video import frame_timing

    if fps is None and info.video_frames > 1:
        return frame_clock(frame_timing(video).times())
    # a run's configured rate; a one-frame video has no interval to measure
    return frame_clock(np.zeros(info.video_frames), fps or float(info.fps))


def _choose_segments(segments: Sequence[Any] | None, lyrics: Any, audio: Any) -> tuple[list[Any], str]:
    """(segments to score, their source): the storyboard, else lyric intervals, else 2 s windows."""
    if segments:
        return _from_storyboard(segments, lyrics), "storyboard"
    if lyrics is not None and lyrics.lines:
        return lyric_segments(lyrics, audio.duration), "lyrics"
    return fixed_windows(audio.duration), "windows"


def _stream_video(
    video: Path, perceptor: Any, every: int, batch: int, n_times: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode ``video``: evaluated frame numbers (M,), CLIP embeddings (M, D), pixel changes (M - 1,).

    Frames past the ``n_times`` timestamps known for the video are dropped.
    """
    from metamusic.media.video import read_frames

    index, embeds, pair_pixel = _embed_video(read_frames(video), perceptor, every, batch)
    if len(index) == 0:
        raise InputError(f"{video}: no frame could be decoded")
    index = index[index < n_times]  # a decoder never yields more frames than packets; be safe
    return index, embeds[: len(index)], pair_pixel[: max(0, len(index) - 1)]


def _frame_scores(
    embeds: np.ndarray, owner: np.ndarray, evals: Sequence[Any],
    text_e: dict[str, np.ndarray], audio_e: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame text and audio alignment (M,) against the targets of each frame's segment; nan outside."""
    text_scores = np.full(len(embeds), math.nan)
    audio_scores = np.full(len(embeds), math.nan)
    for j, seg in enumerate(evals):
        mask = owner == j
        if not mask.any():
            continue
        audio_scores[mask] = audio_alignment(embeds[mask], audio_e[j])
        if seg.text:
            text_scores[mask] = text_alignment(embeds[mask], text_e[seg.text])
    return text_scores, audio_scores


def _segment_rows(
    evals: Sequence[Any], owner: np.ndarray, text_scores: np.ndarray, audio_scores: np.ndarray,
    pair_cos: np.ndarray, pair_pixel: np.ndarray,
) -> list[SegmentMetrics]:
    """One SegmentMetrics per segment: mean scores of its frames and of the pairs ending in it."""
    pair_owner = owner[1:]  # a pair belongs to the segment of its second frame
    rows = []
    for j, seg in enumerate(evals):
        mask, pmask = owner == j, pair_owner == j
        rows.append(SegmentMetrics(
            seg.index, seg.start, seg.end, seg.kind, seg.text, int(mask.sum()),
            _nanmean(text_scores[mask]), _nanmean(audio_scores[mask]),
            _nanmean(pair_cos[pmask]), _nanmean(pair_pixel[pmask]),
        ))
    return rows


def _overall(
    text_scores: np.ndarray, audio_scores: np.ndarray, pair_cos: np.ndarray, pair_pixel: np.ndarray
) -> dict[str, float]:
    """Mean of each score over the whole video (nan ignored)."""
    return {
        "text_alignment": _nanmean(text_scores),
        "audio_alignment": _nanmean(audio_scores),
        "smoothness": _nanmean(pair_cos),
        "pixel_change": _nanmean(pair_pixel),
    }


def _jump(
    changes: np.ndarray, times: np.ndarray, index: np.ndarray, owner: np.ndarray, evals: Sequence[Any]
) -> dict[str, Any]:
    """The largest of the consecutive ``changes``: video frame, time, value and segment (None when none)."""
    i, t, v = largest_jump(changes, times)
    frame = int(index[i + 1]) if i >= 0 else None
    seg = int(owner[i + 1]) if i >= 0 and owner[i + 1] >= 0 else None
    return {"frame": frame, "time": t, "value": v,
            "segment": evals[seg].index if seg is not None else None}


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
    from metamusic.song.analysis import detect_beats

    if every < 1 or batch < 1:
        raise InputError(f"--every and --batch must be >= 1, got {every} and {batch}")
    # 1. Inputs and the segmentation.
    video, audio, lyrics = _load_inputs(video, audio, lyrics)
    info = _probe_video(video)
    all_times, fps, video_seconds = _frame_times(video, info, fps)
    evals, source = _choose_segments(segments, lyrics, audio)

    # 2. Stream the video: CLIP embeddings (M, D) and pixel changes (M - 1,).
    index, embeds, pair_pixel = _stream_video(video, perceptor, every, batch, len(all_times))
    times = all_times[index]  # (M,)
    slot = np.rint(times * fps).astype(np.int64)  # (M,) the frame slot each frame fills at the video's rate
    owner = segment_of_frames(slot, evals, fps)  # (M,)

    # 3. Targets: one text embedding per lyric, one Wav2CLIP embedding per segment.
    text_e = _embed_texts(perceptor, [s.text for s in evals if s.text])
    audio_e = [_embed_audio(wav2clip, audio, s.start, s.end, perceptor.device) for s in evals]

    # 4. Per-frame and per-pair scores.
    text_scores, audio_scores = _frame_scores(embeds, owner, evals, text_e, audio_e)
    _, pair_cos = temporal_smoothness(embeds)

    # 5. Per-segment and overall numbers.
    rows = _segment_rows(evals, owner, text_scores, audio_scores, pair_cos, pair_pixel)
    overall = _overall(text_scores, audio_scores, pair_cos, pair_pixel)

    # 6. Largest jumps and A/V sync.
    lyric_marks = [(ln.start, ln.text) for ln in lyrics.lines] if lyrics is not None else []
    return EvaluationResult(
        video=video, audio=audio.path, fps=fps, video_frames=int(info.video_frames), every=every,
        clip_model=str(getattr(perceptor, "name", "")), segment_source=source,
        frame_index=index, frame_time=times, text_scores=text_scores, audio_scores=audio_scores,
        pair_cosine=pair_cos, pair_pixel=pair_pixel, segments=rows, overall=overall,
        largest_jump={**_jump(1.0 - pair_cos, times, index, owner, evals),
                      "measure": "1 - cosine of consecutive CLIP embeddings"},
        largest_pixel_jump={**_jump(pair_pixel, times, index, owner, evals), "measure": "mean absolute pixel change"},
        sync=av_sync(video_seconds, audio.duration, fps),
        lyric_marks=lyric_marks, beats=np.asarray(detect_beats(audio), dtype=np.float64),
    )
