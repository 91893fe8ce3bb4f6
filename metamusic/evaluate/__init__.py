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

from metamusic.evaluate.cli import build_parser, main
from metamusic.evaluate.metrics import (
    MIN_AUDIO_WINDOW,
    audio_alignment,
    audio_window,
    av_sync,
    cosine,
    frame_clock,
    largest_jump,
    pixel_change,
    temporal_smoothness,
    text_alignment,
)
from metamusic.evaluate.report import (
    CSV_COLUMNS,
    metrics_csv,
    plot_figure,
    write_report,
)
from metamusic.evaluate.scoring import EvaluationResult, SegmentMetrics, evaluate
from metamusic.evaluate.segments import (
    WINDOW_SECONDS,
    EvalSegment,
    fixed_windows,
    lyric_segments,
    segment_of_frames,
)

__all__ = [
    "CSV_COLUMNS",
    "MIN_AUDIO_WINDOW",
    "WINDOW_SECONDS",
    "EvalSegment",
    "EvaluationResult",
    "SegmentMetrics",
    "audio_alignment",
    "audio_window",
    "av_sync",
    "build_parser",
    "cosine",
    "evaluate",
    "fixed_windows",
    "frame_clock",
    "largest_jump",
    "lyric_segments",
    "main",
    "metrics_csv",
    "pixel_change",
    "plot_figure",
    "segment_of_frames",
    "temporal_smoothness",
    "text_alignment",
    "write_report",
]
