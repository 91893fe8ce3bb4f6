"""The song's timeline: beats, segments, which prompt drives each segment, and steps -> frames.

Two segmentations follow Music2Video (arXiv 2201.03809):

- :func:`beat_segments` (``generate.py``): segments between detected beats. ``mode="m2v"`` keeps
  the original's either/or rule (a segment holding a lyric start is driven by that lyric's CLIP
  text embedding, every other one by the Wav2CLIP embedding of its own audio); ``mode="fused"``
  is the paper's fusion (text and audio prompts summed with weights).
- :func:`interpolate_segments` (``generate_interpolate.py``): every lyric interval is split in
  halves, text then audio, so the image morphs between the two targets.

Fixed here with respect to the original code (on purpose, documented where it happens):

- Audio before the first beat is a segment of its own (the original dropped it and drifted).
- Every lyric drives a segment (the original advanced at most one lyric per beat segment, and
  compared lyric times with cumulative lengths that started at the first beat, not at 0 s).
- Steps per segment are rounded and at least 1 (the original ran ``int(d * rate) + 1``;
  ``faithful_steps`` restores that).
- With the video's frame rate given, boundaries lie on frame times, so no segment is shorter
  than a frame (:func:`snap_to_frames`).
- The video has a constant frame rate with exactly ``round(duration * fps)`` frames: each frame
  shows the optimisation step that corresponds to its moment of music (:func:`frame_schedule`),
  instead of one mp4 per segment at a clipped, segment-specific fps.

Everything here is a pure function of numbers (numpy); the beats and the volume envelope come
from :mod:`metamusic.song.analysis` (librosa).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from metamusic.errors import InputError
from metamusic.song.analysis import Envelope, peak_volume
from metamusic.song.lyrics import LyricLine, Lyrics

KINDS = ("text", "audio", "fused")
MODES = ("m2v", "fused")

@dataclass(frozen=True)
class Segment:
    """One stretch of the song optimised toward one target (text, audio or both)."""

    index: int
    start: float  # seconds
    end: float  # seconds
    steps: int  # optimisation steps spent on this segment (>= 1)
    kind: str  # "text" | "audio" | "fused"
    text: str | None  # the lyric driving it (None for "audio")
    lyric_index: int | None  # index into Lyrics.lines
    text_weight: float  # weight of the CLIP text prompt (0 when unused)
    audio_weight: float  # weight of the Wav2CLIP audio prompt (0 when unused)
    audio_start: float  # audio window embedded by Wav2CLIP for the audio prompt
    audio_end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly dict (built-in types only, even if numpy scalars went in)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, np.generic):
                d[k] = v.item()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        """Segment from :meth:`to_dict` output (e.g. an edited storyboard), validated."""
        where = f"storyboard segment {data.get('index', '?')}"
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise InputError(f"{where}: missing key(s) {', '.join(missing)}")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}")
        try:
            seg = cls(
                index=int(data["index"]),
                start=float(data["start"]),
                end=float(data["end"]),
                steps=int(data["steps"]),
                kind=str(data["kind"]),
                text=None if data["text"] is None else str(data["text"]),
                lyric_index=None if data["lyric_index"] is None else int(data["lyric_index"]),
                text_weight=float(data["text_weight"]),
                audio_weight=float(data["audio_weight"]),
                audio_start=float(data["audio_start"]),
                audio_end=float(data["audio_end"]),
            )
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}: bad value ({e})") from None
        if seg.kind not in KINDS:
            raise InputError(f"{where}: kind must be one of {', '.join(KINDS)}, got {seg.kind!r}")
        if not seg.end > seg.start:
            raise InputError(f"{where}: end ({seg.end}) must be after start ({seg.start})")
        if seg.steps < 1:
            raise InputError(f"{where}: steps must be >= 1, got {seg.steps}")
        if not seg.audio_end > seg.audio_start:
            raise InputError(f"{where}: audio_end must be after audio_start")
        return seg


@dataclass(frozen=True)
class FrameSpan:
    """The output video frames one segment owns, and which of its steps each frame shows."""

    segment: int  # Segment.index
    first_frame: int
    n_frames: int
    step_of_frame: tuple[int, ...]  # (n_frames,) step index within the segment, non-decreasing


def steps_for_segment(duration: float, ips: float, peak_volume: float, faithful: bool = False) -> int:
    """Steps for a segment: duration * ips, or duration * (10 + 110 * peak volume) if ips == 0 (Music2Video).

    Music2Video's ``generate.py`` loop runs steps 0..N with N = ``int(d * rate)`` and breaks after
    step N, so ``int(d * rate) + 1`` steps (``faithful=True``, ``--faithful_steps``). By default
    the count is rounded and at least 1: one step per ``1 / rate`` seconds of music, so the step
    budget matches the song's length.
    """
    if ips < 0:
        raise InputError(f"-ips/--iterations_per_second must be >= 0 (0 = volume-scaled), got {ips}")
    rate = ips if ips > 0 else 10.0 + 110.0 * float(peak_volume)
    if faithful:
        return int(duration * rate) + 1
    return max(1, int(round(duration * rate)))


# ---------------------------------------------------------------------------------------------
# Steps and segmentations


def _check_duration(duration: float) -> None:
    if not (duration > 0 and math.isfinite(duration)):
        raise InputError(f"the song must have a positive duration, got {duration} s")


def _song_lyrics(lyrics: Lyrics | None, duration: float) -> list[tuple[int, LyricLine]]:
    """(index, line) for lyric lines that start inside the song, checked to be strictly increasing.

    Lines starting at or after the song's end cannot drive anything and are left out (a CLI may
    warn about them).
    """
    if lyrics is None:
        return []
    name = str(lyrics.path) if lyrics.path is not None else "lyrics"
    out: list[tuple[int, LyricLine]] = []
    prev = -math.inf
    for i, line in enumerate(lyrics.lines):
        where = f"{name} line {line.line}" if line.line else f"{name} entry {i + 1}"
        if not (line.start >= 0 and math.isfinite(line.start)):
            raise InputError(f"{where}: lyric start time must be a time >= 0 s, got {line.start}")
        if not line.start > prev:
            raise InputError(f"{where}: lyric start times must increase strictly ({line.start} s after {prev} s)")
        if line.end is not None and not line.end > line.start:
            raise InputError(f"{where}: lyric end time {line.end} s is not after its start {line.start} s")
        prev = line.start
        if line.start < duration:
            out.append((i, line))
    return out


def _thin_beats(beats: np.ndarray, duration: float, fixed: list[float], min_segment: float) -> list[float]:
    """Beats inside (0, duration), sorted and unique, minus those closer than min_segment to a kept boundary.

    ``fixed`` boundaries (0, duration, lyric times) always stay; a beat is kept only if it is at
    least ``min_segment`` from every fixed boundary and from the previously kept beat.
    """
    b = np.unique(np.asarray(beats, dtype=np.float64).ravel())
    b = b[(b > 0.0) & (b < duration)]
    if min_segment <= 0:
        return [float(x) for x in b]
    anchors = np.unique(np.asarray([0.0, duration, *fixed], dtype=np.float64))
    kept: list[float] = []
    for x in b:
        if np.min(np.abs(anchors - x)) < min_segment:
            continue
        if kept and x - kept[-1] < min_segment:
            continue
        kept.append(float(x))
    return kept


def snap_to_frames(
    duration: float, beats: np.ndarray, lyrics: Lyrics | None, fps: float
) -> tuple[np.ndarray, Lyrics | None]:
    """Beats and lyric times moved onto the video's frame times k / fps, so every segment owns a frame.

    A segment owns the frames round(start * fps) .. round(end * fps) - 1 (:func:`frame_schedule`),
    so a boundary within half a frame of another used to cut a segment that no frame shows while
    its steps still ran. Here every boundary moves to its nearest frame time (by at most half a
    frame), and boundaries that meet become one:

    - beats landing on the same frame become one; a beat landing on 0 or on the song's last frame
      time is dropped; a beat landing on a lyric time becomes the same boundary (a lyric exactly
      on a beat drives the segment starting there);
    - a lyric start landing on the previous line's frame moves one frame later, and lines near
      the song's end move back from it, so every line keeps a segment of at least one frame
      (InputError only when more lines start in a stretch than it has frames);
    - an SRT end time stays at least one frame after its line's start; one that reaches the next
      line's start (or the song's end) is dropped, so no gap shorter than a frame is cut.

    The song's end is not moved. Lines starting at or after the song's end are returned unchanged
    (segmentations leave them out). A song shorter than half a frame is returned unchanged.
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"output frame rate must be > 0, got {fps}")
    n = frame_count(duration, fps)  # frames of the video; frame index n is the song's end
    if n < 1:
        return np.asarray(beats, dtype=np.float64).ravel(), lyrics

    snapped_lyrics = lyrics
    if lyrics is not None:
        snapped_lyrics = _snap_lyrics(lyrics, duration, fps, n)

    kb = {round(float(b) * fps) for b in np.asarray(beats, dtype=np.float64).ravel() if 0.0 < b < duration}
    kept = sorted(k for k in kb if 0 < k < n)
    return np.asarray([k / fps for k in kept], dtype=np.float64), snapped_lyrics


def _lyric_frames(lyrics: Lyrics, lines: list[LyricLine], inside: list[int], fps: float, n: int) -> list[int]:
    """Frame index of each line in ``inside``: its nearest frame, at least one after the previous
    line's and before the next line's and the song's end (frame ``n``).

    InputError when more lines start in a stretch than it has frames.
    """
    ks: list[int] = []
    for i in inside:  # forward: one frame after the previous line at least
        k = max(round(lines[i].start * fps), ks[-1] + 1 if ks else 0)
        ks.append(k)
    for j in range(len(ks) - 1, -1, -1):  # backward: before the song's end and the next line
        ks[j] = min(ks[j], (ks[j + 1] if j + 1 < len(ks) else n) - 1)
    for j, k in enumerate(ks):
        if k < 0 or (j and k <= ks[j - 1]):
            ln = lines[inside[j]]
            name = str(lyrics.path) if lyrics.path is not None else "lyrics"
            raise InputError(
                f"{name} line {ln.line or inside[j] + 1}: too many lyric lines start near {ln.start:.3f} s "
                f"for a {fps:g} fps video (each needs a frame); raise --fps"
            )
    return ks


def _snap_lyrics(lyrics: Lyrics, duration: float, fps: float, n: int) -> Lyrics:
    """``lyrics`` with start and end times of the lines inside the song on frame times (see :func:`snap_to_frames`)."""
    lines = list(lyrics.lines)
    inside = [i for i, ln in enumerate(lines) if ln.start < duration]
    ks = _lyric_frames(lyrics, lines, inside, fps, n)
    for j, i in enumerate(inside):
        ln = lines[i]
        end = ln.end
        if end is not None:
            ke = max(round(end * fps), ks[j] + 1)
            limit = ks[j + 1] if j + 1 < len(ks) else n
            end = ke / fps if ke < limit else None
        lines[i] = LyricLine(start=ks[j] / fps, text=ln.text, end=end, line=ln.line)
    return Lyrics(tuple(lines), path=lyrics.path, format=lyrics.format)


def _steps(start: float, end: float, ips: float, envelope: Envelope | None, faithful: bool = False) -> int:
    if ips == 0:
        if envelope is None:
            raise InputError("volume-scaled steps (-ips 0) need the song's volume envelope")
        return steps_for_segment(end - start, 0, peak_volume(envelope, start, end), faithful)
    return steps_for_segment(end - start, ips, 0.0, faithful)


def beat_segments(
    duration: float,
    beats: np.ndarray,
    lyrics: Lyrics | None,
    *,
    ips: float,
    envelope: Envelope | None,
    mode: str = "m2v",
    text_weight: float = 1.0,
    audio_weight: float = 1.0,
    min_segment: float = 0.0,
    fps: float | None = None,
    faithful_steps: bool = False,
) -> list[Segment]:
    """Segments between beats, each driven by a lyric, its own audio or both (Music2Video ``generate.py``).

    Boundaries are [0, b1, ..., bn, duration], so the lead-in before the first beat is covered.
    ``min_segment`` drops beats closer than that to 0, the song's end, a lyric time (fused mode)
    or the previous kept beat; lyric boundaries are never dropped.

    ``mode="m2v"``: a beat segment [b_i, b_i+1) holding one lyric start is driven by that lyric
    alone (kind "text"); one holding k >= 2 starts is split at the 2nd..k-th start so each lyric
    drives its own piece (the original skipped the extra lyrics); segments without a lyric start
    are driven by their own audio (kind "audio"). A lyric exactly on a beat belongs to the segment
    starting there; a lyric before the first beat drives the lead-in.

    ``mode="fused"``: beat segments are also split at every lyric start and SRT end time, so each
    piece has one active lyric (from its start to the next line's start or its own end) or none.
    Pieces with a lyric are kind "fused" (that text with ``text_weight`` plus the piece's audio
    with ``audio_weight``); the others are kind "audio".

    With ``fps`` (the output video's frame rate), beats and lyric times are first moved onto the
    frame times (:func:`snap_to_frames`), so every segment owns at least one frame.

    Steps per segment follow :func:`steps_for_segment` (``envelope`` is needed when ips == 0;
    ``faithful_steps``: Music2Video's ``int(d * rate) + 1``). The result is contiguous, covers
    [0, duration] exactly and is indexed 0..n-1.
    """
    _check_duration(duration)
    if mode not in MODES:
        raise InputError(f"timeline mode must be one of {', '.join(MODES)}, got {mode!r}")
    _song_lyrics(lyrics, duration)  # validate the times as written, before moving them
    if fps is not None:
        beats, lyrics = snap_to_frames(duration, beats, lyrics, fps)
    lines = _song_lyrics(lyrics, duration)
    starts = [ln.start for _, ln in lines]

    # (start, end, lyric position in `lines` or None)
    if mode == "m2v":
        pieces = _m2v_pieces(beats, duration, starts, min_segment)
    else:
        pieces = _fused_pieces(beats, duration, lines, starts, min_segment)
    return _beat_segment_list(pieces, lines, mode, ips, envelope, faithful_steps, text_weight, audio_weight)


def _m2v_pieces(
    beats: np.ndarray, duration: float, starts: list[float], min_segment: float
) -> list[tuple[float, float, int | None]]:
    """(start, end, lyric position in ``starts`` or None) of the beat segments; one holding k >= 2
    lyric starts is split at the 2nd..k-th start (``mode="m2v"``)."""
    pieces: list[tuple[float, float, int | None]] = []
    bounds = [0.0, *_thin_beats(beats, duration, [], min_segment), duration]
    j = 0  # next lyric to place
    for a, b in zip(bounds[:-1], bounds[1:]):
        inside: list[int] = []
        while j < len(starts) and starts[j] < b:
            inside.append(j)  # starts[j] >= a because earlier segments consumed smaller ones
            j += 1
        if not inside:
            pieces.append((a, b, None))
            continue
        cuts = [a, *(starts[k] for k in inside[1:]), b]
        pieces.extend((cuts[n], cuts[n + 1], k) for n, k in enumerate(inside))
    return pieces


def _fused_pieces(
    beats: np.ndarray, duration: float, lines: list[tuple[int, LyricLine]], starts: list[float], min_segment: float
) -> list[tuple[float, float, int | None]]:
    """(start, end, lyric position in ``lines`` or None) of the beat segments also split at every lyric
    start and SRT end, each with its active lyric (``mode="fused"``)."""
    pieces: list[tuple[float, float, int | None]] = []
    ends = [ln.end for _, ln in lines if ln.end is not None and ln.end < duration]
    lyric_times = [s for s in starts if s > 0.0] + ends
    bounds = sorted({0.0, duration, *_thin_beats(beats, duration, lyric_times, min_segment), *lyric_times})
    for a, b in zip(bounds[:-1], bounds[1:]):
        pieces.append((a, b, _active_lyric(lines, starts, a)))
    return pieces


def _beat_segment_list(
    pieces: list[tuple[float, float, int | None]],
    lines: list[tuple[int, LyricLine]],
    mode: str,
    ips: float,
    envelope: Envelope | None,
    faithful_steps: bool,
    text_weight: float,
    audio_weight: float,
) -> list[Segment]:
    """Segments indexed 0..n-1 from the non-empty ``pieces``, with their steps, kind, text and weights."""
    segments: list[Segment] = []
    for a, b, k in pieces:
        if not b > a:
            continue  # zero-length piece
        steps = _steps(a, b, ips, envelope, faithful_steps)
        if k is None:
            kind, text, li, tw, aw = "audio", None, None, 0.0, audio_weight
        elif mode == "m2v":
            kind, text, li, tw, aw = "text", lines[k][1].text, lines[k][0], text_weight, 0.0
        else:
            kind, text, li, tw, aw = "fused", lines[k][1].text, lines[k][0], text_weight, audio_weight
        a, b = float(a), float(b)
        segments.append(Segment(len(segments), a, b, steps, kind, text, li, tw, aw, a, b))
    return segments


def _active_lyric(lines: list[tuple[int, LyricLine]], starts: list[float], t: float) -> int | None:
    """Position in ``lines`` of the lyric active at time t: the last one started, unless its end has passed."""
    k = int(np.searchsorted(np.asarray(starts), t, side="right")) - 1
    if k < 0:
        return None
    end = lines[k][1].end
    return k if end is None or t < end else None


def interpolate_segments(
    duration: float,
    lyrics: Lyrics | None,
    *,
    ips: float = 100,
    video_length: float = 10.0,
    envelope: Envelope | None = None,
    fps: float | None = None,
    faithful_steps: bool = False,
) -> list[Segment]:
    """Lyric-interval segments of Music2Video ``generate_interpolate.py``: text half, then audio half.

    Segment 0 is [0, t1) driven by its audio (left out when the first lyric starts at 0). Each
    lyric interval [t_i, t_i+1) (the last ends at the song's end) is split in halves: the first
    is driven by the lyric's text, the second by the audio of the WHOLE interval (audio window =
    [t_i, t_i+1)). Without lyrics: fixed audio-only windows of ``video_length`` seconds, the last
    one shorter. Steps = max(1, round(d * ips)) (``faithful_steps``: int(d * ips) + 1); ips == 0
    uses the volume rule with ``envelope``.

    With ``fps``, lyric times, window edges and the halves' midpoints lie on frame times
    (:func:`snap_to_frames`; an odd number of frames gives the text half the extra frame, a
    one-frame interval is all text), so every segment owns at least one frame.
    """
    _check_duration(duration)
    _song_lyrics(lyrics, duration)
    if fps is not None:
        _, lyrics = snap_to_frames(duration, np.zeros(0), lyrics, fps)
    lines = _song_lyrics(lyrics, duration)

    # (start, end, kind, lyric position or None, audio_start, audio_end)
    if not lines:
        plan = _window_plan(duration, video_length, fps)
    else:
        plan = _lyric_plan([ln.start for _, ln in lines], duration, fps)
    return _interpolate_segment_list(plan, lines, ips, envelope, faithful_steps)


def _on_frames(t: float, fps: float | None) -> float:
    """``t`` moved to its nearest frame time (unchanged without fps)."""
    return t if fps is None else round(t * fps) / fps


def _middle(a: float, b: float, fps: float | None) -> float:
    """Where the text half [a, mid) ends: the midpoint, or the frame after the middle with fps."""
    if fps is None:
        return a + 0.5 * (b - a)
    ka, kb = round(a * fps), round(b * fps)
    return (ka + (kb - ka + 1) // 2) / fps if ka + (kb - ka + 1) // 2 < kb else b


def _window_plan(
    duration: float, video_length: float, fps: float | None
) -> list[tuple[float, float, str, int | None, float, float]]:
    """(start, end, kind, lyric position or None, audio_start, audio_end) of audio-only windows of
    ``video_length`` seconds (the song without lyrics)."""
    if not video_length > 0:
        raise InputError(f"-vl/--video_length must be > 0, got {video_length}")
    n = max(1, math.ceil(duration / video_length - 1e-9))
    edges = [min(duration, _on_frames(i * video_length, fps)) for i in range(n)] + [duration]
    if fps is not None and frame_count(duration, fps) >= 1:  # a last window under half a frame joins the one before
        edges = [e for e in edges[:-1] if round(e * fps) < frame_count(duration, fps)] + [duration]
    return [(a, b, "audio", None, a, b) for a, b in zip(edges[:-1], edges[1:])]


def _lyric_plan(
    starts: list[float], duration: float, fps: float | None
) -> list[tuple[float, float, str, int | None, float, float]]:
    """(start, end, kind, lyric position or None, audio_start, audio_end): the lead-in before the first
    lyric, then each lyric interval's text half and audio half."""
    plan: list[tuple[float, float, str, int | None, float, float]] = []
    if starts[0] > 0:
        plan.append((0.0, starts[0], "audio", None, 0.0, starts[0]))
    for k, a in enumerate(starts):
        b = starts[k + 1] if k + 1 < len(starts) else duration
        mid = _middle(a, b, fps)
        plan.append((a, mid, "text", k, a, b))
        plan.append((mid, b, "audio", None, a, b))
    return plan


def _interpolate_segment_list(
    plan: list[tuple[float, float, str, int | None, float, float]],
    lines: list[tuple[int, LyricLine]],
    ips: float,
    envelope: Envelope | None,
    faithful_steps: bool,
) -> list[Segment]:
    """Segments indexed 0..n-1 from the non-empty pieces of ``plan``, with their steps, text and weights."""
    segments: list[Segment] = []
    for a, b, kind, k, wa, wb in plan:
        if not b > a:
            continue
        steps = _steps(a, b, ips, envelope, faithful_steps)
        if kind == "text":
            assert k is not None
            text, li, tw, aw = lines[k][1].text, lines[k][0], 1.0, 0.0
        else:
            text, li, tw, aw = None, None, 0.0, 1.0
        a, b, wa, wb = float(a), float(b), float(wa), float(wb)
        segments.append(Segment(len(segments), a, b, steps, kind, text, li, tw, aw, wa, wb))
    return segments


# ---------------------------------------------------------------------------------------------
# Steps -> frames


def frame_count(duration: float, fps: float) -> int:
    """Number of output video frames for a song of ``duration`` seconds: round(duration * fps)."""
    return int(round(duration * fps))


def frame_schedule(segments: list[Segment], fps: float) -> list[FrameSpan]:
    """Which output frames each segment owns and which optimisation step each frame shows.

    Segment s owns frames round(start * fps) .. round(end * fps) - 1, so consecutive segments
    share their boundary frame index, the total is exactly round(duration * fps) and the video
    never drifts from the audio. Frame k (time t = k / fps) of a segment with n steps shows step
    j = min(n - 1, floor((t - start) / duration * n)): one step is still one moment of music as
    in Music2Video (loud segments get more steps, so the image evolves faster there), but the
    output plays at a constant ``fps``. A segment shorter than a frame may own 0 frames; its
    steps still run (and shape the next segment's start).
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"output frame rate must be > 0, got {fps}")
    spans: list[FrameSpan] = []
    for seg in segments:
        f0 = int(round(seg.start * fps))
        f1 = int(round(seg.end * fps))
        n = max(1, seg.steps)
        d = seg.duration
        steps: list[int] = []
        for k in range(f0, f1):
            frac = (k / fps - seg.start) / d if d > 0 else 0.0
            steps.append(min(n - 1, max(0, math.floor(frac * n))))
        spans.append(FrameSpan(seg.index, f0, max(0, f1 - f0), tuple(steps)))
    return spans


def keyframe_times(segments: list[Segment]) -> list[float]:
    """Segment boundaries in seconds: every segment's start, then the last segment's end."""
    if not segments:
        return []
    return [s.start for s in segments] + [segments[-1].end]


def lyric_assignment_table(segments: list[Segment]) -> str:
    """Human-readable table (for logs) of each segment's time span, steps, kind, weights and text."""
    header = (
        f"{'#':>4}  {'start':>8}  {'end':>8}  {'steps':>6}  {'kind':<5}  "
        f"{'w_txt':>5}  {'w_aud':>5}  {'audio window':<19}  text"
    )
    rows = [header, "-" * len(header)]
    for s in segments:
        window = f"{s.audio_start:8.3f}-{s.audio_end:<8.3f}" if s.audio_weight else ""
        text = "" if s.text is None else (s.text if len(s.text) <= 60 else s.text[:57] + "...")
        lyric = f"[{s.lyric_index}] " if s.lyric_index is not None else ""
        rows.append(
            f"{s.index:>4}  {s.start:8.3f}  {s.end:8.3f}  {s.steps:>6}  {s.kind:<5}  "
            f"{s.text_weight:5.2f}  {s.audio_weight:5.2f}  {window:<19}  {lyric}{text}".rstrip()
        )
    total = sum(s.steps for s in segments)
    rows.append(f"{len(segments)} segments, {total} steps")
    return "\n".join(rows)
