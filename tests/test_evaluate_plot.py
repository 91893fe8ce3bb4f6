"""evaluate.py's plot: legends never cover data or the largest-jump marker; each measure has its own scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _result():
    from metamusic.evaluate import EvaluationResult

    m = 120
    t = np.arange(m) / 10.0
    rng = np.random.default_rng(0)
    cos = 0.97 + 0.02 * rng.random(m - 1)
    cos[-3] = 0.80  # the largest jump: near the right end, where a legend used to sit
    pixel = 0.002 + 0.001 * rng.random(m - 1)
    return EvaluationResult(
        video=Path("v.mp4"), audio=None, fps=10.0, video_frames=m, every=1, clip_model="tiny",
        segment_source="lyrics", frame_index=np.arange(m), frame_time=t,
        text_scores=0.3 + 0.05 * np.sin(t), audio_scores=0.25 + 0.05 * np.cos(t),
        pair_cosine=cos, pair_pixel=pixel, segments=[], overall={},
        largest_jump={"frame": m - 3, "time": float(t[-3]), "value": 0.20},
        largest_pixel_jump={"frame": 5, "time": 0.5, "value": 0.003},
        sync={"audio_duration": float(t[-1])}, lyric_marks=[(1.0, "hello"), (6.0, "world")],
        beats=np.arange(0.25, 12, 0.5),
    )


def test_legends_cover_no_data_and_each_measure_has_its_own_axis():
    from metamusic.evaluate import plot_figure

    fig = plot_figure(_result())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    assert len(axes) == 3
    for ax in axes:
        legend = ax.get_legend()
        assert legend is not None
        lbox = legend.get_window_extent(renderer)
        for other in axes:  # outside every plotting area: no curve, marker or label under it
            assert not lbox.overlaps(other.get_window_extent(renderer)), ax.get_ylabel()
        assert lbox.x1 <= fig.bbox.x1 + 0.5  # and inside the picture
    # Smoothness (~0.8-1.0) and pixel change (~0.002) are each scaled to their own data.
    smooth_ax = next(ax for ax in axes if any("smoothness" in ln.get_label() for ln in ax.lines))
    pixel_ax = next(ax for ax in axes if any("pixel change" in ln.get_label() for ln in ax.lines))
    assert smooth_ax is not pixel_ax
    lo, hi = pixel_ax.get_ylim()
    assert hi < 0.01 and hi - lo < 0.005
    lo, hi = smooth_ax.get_ylim()
    assert 0.7 < lo < 0.8 and hi < 1.05
    marker = next(ln for ln in smooth_ax.lines if ln.get_label() == "largest jump")
    assert marker.get_ydata()[0] == 0.80
