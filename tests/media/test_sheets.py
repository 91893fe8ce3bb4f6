"""Storyboard contact sheet and timeline PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metamusic.media.sheets import contact_sheet, panel_caption, shorten, timeline_plot


def _panels(n: int, size: int = 48):
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        yield frame, panel_caption(i, 0.5 * i, 0.5 * i + 0.5, "text", "the blue ocean " * (1 + i))


def _non_trivial_png(path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        arr = np.asarray(img.convert("RGB"))
    assert arr.shape[0] > 50 and arr.shape[1] > 50
    assert arr.std() > 5  # not a uniform image
    return arr.shape[1], arr.shape[0]


def test_panel_caption_and_shorten():
    assert panel_caption(3, 1.5, 2.0, "text", "the blue ocean") == "#3 0:01.5-0:02.0 text: 'the blue ocean'"
    assert panel_caption(12, 61.25, 75.0, "audio") == "#12 1:01.2-1:15.0 audio"
    s = shorten("word " * 50, width=20, max_lines=2)
    assert s.endswith("...") and s.count("\n") == 1 and all(len(x) <= 20 for x in s.split("\n"))
    assert shorten("short", 20) == "short"
    assert shorten("青" * 50, width=10, max_lines=1) == "青" * 7 + "..."


def test_contact_sheet_grows_with_rows(tmp_path):
    one_row, two_rows = tmp_path / "a.png", tmp_path / "sheets" / "b.png"
    assert contact_sheet(_panels(6), one_row, columns=6) == 6
    assert contact_sheet(_panels(7), two_rows, columns=6) == 7  # a generator is fine
    w1, h1 = _non_trivial_png(one_row)
    w2, h2 = _non_trivial_png(two_rows)
    assert w1 == w2 and h2 > 1.7 * h1
    assert not list(tmp_path.rglob(".*partial*"))


def test_contact_sheet_fewer_panels_than_columns_and_big_frames(tmp_path):
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, size=(600, 400, 3), dtype=np.uint8)
    path = tmp_path / "c.png"
    assert contact_sheet([(big, "tall frame"), (big, "another")], path, columns=6) == 2
    w, h = _non_trivial_png(path)
    assert w < h * 2  # two columns, not six


def test_contact_sheet_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        contact_sheet([], tmp_path / "x.png")
    with pytest.raises(ValueError):
        contact_sheet([(np.zeros((8, 8), np.uint8), "gray")], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_timeline_plot_written(tmp_path):
    t = np.linspace(0, 12, 300)
    v = np.abs(np.sin(t)) * 0.8
    path = tmp_path / "timeline.png"
    timeline_plot(
        path, 12.0, t, v, beats=np.arange(0.25, 12, 0.5),
        lyrics_lines=[(1.0, "hello world"), (5.0, "the blue ocean " * 5), (8.0, "青い海")],
        segment_bounds=[(0, 1, "audio"), (1, 5, "text"), (5, 8, "fused"), (8, 12, "other")],
    )  # fmt: skip
    w, h = _non_trivial_png(path)
    assert w > h
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB")).astype(int)
    # Segment shading by kind: some pixels are bluish (text) and some greenish (fused).
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    assert ((b > r + 20) & (b > g)).any() and ((g > r + 15) & (g > b + 15)).any()


def test_timeline_plot_rejects_mismatched_envelope(tmp_path):
    with pytest.raises(ValueError):
        timeline_plot(tmp_path / "t.png", 5.0, [0, 1, 2], [0, 1], [], [], [])


def test_timeline_last_lyric_label_is_not_cut_off():
    from metamusic.media.sheets import timeline_figure

    t = np.linspace(0, 30, 300)
    lines = [(2.0, "first light on the water"), (15.0, "the middle of the song"),
             (28.5, "and the very last line goes here")]
    fig = timeline_figure(30.0, t, np.abs(np.sin(t)), [], lines, [(0, 30, "text")])
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    box = ax.get_window_extent(renderer)
    labels = [txt for txt in ax.texts if txt.get_text().strip()]
    assert len(labels) == 3
    for label in labels:
        extent = label.get_window_extent(renderer)
        assert box.x0 - 0.5 <= extent.x0 and extent.x1 <= box.x1 + 0.5, (label.get_text(), extent, box)
    assert labels[0].get_horizontalalignment() == "left"  # room to the right: starts at its marker


def test_long_song_sheets_stay_readable_and_within_pixel_limits(tmp_path):
    """A 240 s song with 479 segments: timeline rows of at most 30 s, storyboard pages of 48 panels."""
    from metamusic.media.sheets import ROW_SECONDS, timeline_figure

    duration = 240.0
    t = np.linspace(0, duration, 4000)
    bounds = [(i * 0.5, (i + 1) * 0.5, "audio") for i in range(479)] + [(239.5, 240.0, "text")]
    lines = [(5.0 + 10 * k, f"line {k} of the song") for k in range(23)]
    fig = timeline_figure(duration, t, np.abs(np.sin(t)), np.arange(0.5, 240, 0.5), lines, bounds)
    assert len(fig.axes) == 8
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert hi - lo <= ROW_SECONDS
    path = tmp_path / "timeline.png"
    timeline_plot(path, duration, t, np.abs(np.sin(t)), np.arange(0.5, 240, 0.5), lines, bounds)
    with Image.open(path) as img:
        assert img.size[0] <= 2000 and img.size[1] <= 2500
        # readable: at least ~40 pixels per second of song along a row
        assert img.size[0] / ROW_SECONDS >= 40
    frames = [(np.full((64, 64, 3), k % 255, np.uint8), f"segment {k}") for k in range(48)]
    assert contact_sheet(frames, tmp_path / "page.png") == 48
    with Image.open(tmp_path / "page.png") as img:
        assert img.size[0] <= 2000 and img.size[1] <= 3000
