"""Overview PNGs of a run: a storyboard contact sheet and a song timeline plot.

Both draw with matplotlib's object API (``matplotlib.figure.Figure`` on a ``FigureCanvasAgg``),
so nothing touches pyplot's global state or the user's chosen backend, and both write their PNG
atomically (temporary name, then rename).
"""

from __future__ import annotations

import contextlib
import math
import os
import textwrap
import warnings
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from metamusic.files import atomic_path

__all__ = ["KIND_COLORS", "contact_sheet", "panel_caption", "shorten", "timeline_figure", "timeline_plot"]

KIND_COLORS: dict[str, str] = {"text": "tab:blue", "audio": "tab:orange", "fused": "tab:green"}
_OTHER_KIND_COLOR = "tab:gray"
_THUMB_PX = 256  # panels are downscaled to at most this many pixels per side on arrival
_PANEL_IN = 2.2  # panel width in inches
_CAPTION_IN = 0.45  # room under each panel for two caption lines
_DPI = 100
_MAX_PX = 30000  # keep well under Agg's 2**16 pixel limit per side


def _new_figure(width_in: float, height_in: float, dpi: float):
    """A Figure bound to an Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


@contextlib.contextmanager
def _quiet_missing_glyphs() -> Iterator[None]:
    """Glyphs missing from the default font (e.g. CJK lyrics) draw as boxes; do not spam."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        yield


def _save_png(fig, path: str | os.PathLike) -> None:
    with atomic_path(path, suffix=".png") as tmp, _quiet_missing_glyphs():
        fig.savefig(tmp, format="png", dpi=fig.dpi, facecolor="white")


def shorten(text: str, width: int = 32, max_lines: int = 2) -> str:
    """``text`` wrapped to ``max_lines`` lines of ``width`` characters, ending in '...' when cut.

    Words longer than a line (and text without spaces) are broken between characters.
    """
    text = " ".join(text.split())
    lines = textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)
    if len(lines) <= max_lines:
        return "\n".join(lines)
    kept = lines[:max_lines]
    kept[-1] = kept[-1][: max(0, width - 3)].rstrip() + "..."
    return "\n".join(kept)


def _clock(t: float) -> str:
    """``M:SS.s`` (tenths) for panel captions."""
    tenths = int(round(t * 10))
    m, rest = divmod(tenths, 600)
    return f"{m}:{rest // 10:02d}.{rest % 10}"


def panel_caption(index: int, start: float, end: float, kind: str, text: str | None = None) -> str:
    """A storyboard caption such as ``#3 0:01.5-0:02.0 text: 'the blue ocean'``."""
    head = f"#{index} {_clock(start)}-{_clock(end)} {kind}"
    return f"{head}: '{text}'" if text else head


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 scaled down to at most ``_THUMB_PX`` per side."""
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
        raise ValueError(f"panel image must be an (H, W, 3) uint8 array, got {getattr(frame, 'shape', None)}")
    h, w = frame.shape[:2]
    scale = _THUMB_PX / max(h, w)
    if scale >= 1:
        return frame.copy()
    img = Image.fromarray(frame).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    return np.asarray(img)


def contact_sheet(
    panels: Iterable[tuple[np.ndarray, str]],
    path: str | os.PathLike,
    columns: int = 6,
) -> int:
    """Write a PNG grid of ``(frame (H, W, 3) uint8, caption)`` panels, ``columns`` per row.

    ``panels`` may be a generator: each frame is downscaled to a thumbnail as it arrives, so
    the frames of a whole song are never held at full size. Captions are shortened to two
    lines. Returns the number of panels drawn.
    """
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    thumbs = [(_thumbnail(frame), str(caption)) for frame, caption in panels]
    n = len(thumbs)
    if n == 0:
        raise ValueError("a contact sheet needs at least one panel")
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    aspect = max(t.shape[0] / t.shape[1] for t, _ in thumbs)  # tallest panel sets the row height
    row_in = _PANEL_IN * aspect + _CAPTION_IN
    width_in, height_in = cols * _PANEL_IN, rows * row_in
    dpi = min(_DPI, _MAX_PX / max(width_in, height_in))
    fig = _new_figure(width_in, height_in, dpi)
    for k, (thumb, caption) in enumerate(thumbs):
        r, c = divmod(k, cols)
        # Axes in figure fractions: image on top of the cell, caption below it.
        left = (c * _PANEL_IN + 0.05) / width_in
        bottom = (height_in - (r + 1) * row_in + _CAPTION_IN) / height_in
        ax = fig.add_axes((left, bottom, (_PANEL_IN - 0.1) / width_in, (_PANEL_IN * aspect - 0.05) / height_in))
        ax.imshow(thumb, interpolation="antialiased")
        ax.set_axis_off()
        fig.text(
            (c + 0.5) * _PANEL_IN / width_in,
            bottom - 0.03 / height_in,
            shorten(caption, width=34),
            ha="center", va="top", fontsize=7, wrap=False,
        )  # fmt: skip
    _save_png(fig, path)
    return n


def timeline_plot(
    path: str | os.PathLike,
    duration: float,
    envelope_times: Sequence[float] | np.ndarray,
    envelope_values: Sequence[float] | np.ndarray,
    beats: Sequence[float] | np.ndarray,
    lyrics_lines: Sequence[tuple[float, str]],
    segment_bounds: Sequence[tuple[float, float, str]],
) -> None:
    """Write :func:`timeline_figure` to ``path`` as a PNG."""
    fig = timeline_figure(duration, envelope_times, envelope_values, beats, lyrics_lines, segment_bounds)
    _save_png(fig, path)


ROW_SECONDS = 30.0  # timeline.png wraps into rows of at most this many seconds
_ROW_WIDTH_IN = 14.0  # every row has the same time scale: about 2 s per inch
_ROW_HEIGHT_IN = 2.3


def timeline_figure(
    duration: float,
    envelope_times: Sequence[float] | np.ndarray,
    envelope_values: Sequence[float] | np.ndarray,
    beats: Sequence[float] | np.ndarray,
    lyrics_lines: Sequence[tuple[float, str]],
    segment_bounds: Sequence[tuple[float, float, str]],
):
    """The song as a figure: volume envelope over time, beat ticks, labelled lyric markers and
    segment spans shaded by kind (text / audio / fused; any other kind in gray).

    The song wraps into rows of at most ROW_SECONDS on one time scale, so the labels of a long
    song stay readable at 100% zoom; the figure stays within the sheets' pixel limit.
    """
    times = np.asarray(envelope_times, dtype=np.float64)
    values = np.asarray(envelope_values, dtype=np.float64)
    if times.shape != values.shape or times.ndim != 1:
        raise ValueError(f"envelope times and values must be 1-D of equal length, got {times.shape} and {values.shape}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"song duration must be a positive number of seconds, got {duration!r}")
    rows = max(1, math.ceil(duration / ROW_SECONDS - 1e-9))
    span = min(ROW_SECONDS, duration)
    width_in, height_in = _ROW_WIDTH_IN, 0.5 + rows * _ROW_HEIGHT_IN
    fig = _new_figure(width_in, height_in, min(_DPI, _MAX_PX / max(width_in, height_in)))
    peak = float(values.max()) if values.size and values.max() > 0 else 1.0
    for r in range(rows):
        bottom = (height_in - 0.35 - (r + 1) * _ROW_HEIGHT_IN + 0.45) / height_in
        ax = fig.add_axes((0.6 / width_in, bottom, 1 - 0.8 / width_in, (_ROW_HEIGHT_IN - 0.6) / height_in))
        t0 = r * ROW_SECONDS
        _timeline_row(ax, t0, t0 + span, peak, times, values, beats, lyrics_lines, segment_bounds)
        if r == rows - 1:
            ax.set_xlabel("time (s)")
        if r == 0:
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=6, fontsize=7, frameon=False)
    _keep_labels_inside(fig)
    return fig


def _timeline_row(ax, t0: float, t1: float, peak: float, times: np.ndarray, values: np.ndarray,
                  beats: Sequence[float] | np.ndarray, lyrics_lines: Sequence[tuple[float, str]],
                  segment_bounds: Sequence[tuple[float, float, str]]) -> None:
    """One row of the timeline: what happens between t0 and t1 seconds."""
    # 1. Segments, shaded by kind, under everything else.
    seen: set[str] = set()
    for k, (start, end, kind) in enumerate(segment_bounds):
        if end < t0 or start > t1:
            continue
        color = KIND_COLORS.get(kind, _OTHER_KIND_COLOR)
        ax.axvspan(start, end, color=color, alpha=0.18 if k % 2 == 0 else 0.28, lw=0,
                   label=None if kind in seen else f"segment: {kind}")  # fmt: skip
        ax.axvline(start, color=color, lw=0.4, alpha=0.6)
        seen.add(kind)
    # 2. The volume envelope.
    inside = (times >= t0 - 1) & (times <= t1 + 1)
    ax.fill_between(times[inside], 0, values[inside], color="0.35", alpha=0.5, lw=0)
    ax.plot(times[inside], values[inside], color="0.15", lw=0.8, label="volume")
    # 3. Beat ticks along the bottom edge (x in data units, y in axes fraction).
    beats = np.asarray(beats, dtype=np.float64)
    beats = beats[(beats >= t0) & (beats <= t1)]
    if beats.size:
        ax.vlines(beats, 0, 0.06, transform=ax.get_xaxis_transform(), color="crimson", lw=0.8, label="beats")
    # 4. Lyric markers with labels, staggered over three heights so neighbours overlap less.
    first = True
    for k, (t, text) in enumerate(lyrics_lines):
        if not t0 <= t < t1:
            continue
        ax.axvline(t, color="purple", lw=0.9, ls="--", label="lyrics" if first else None)
        first = False
        ax.text(t, 0.97 - 0.09 * (k % 3), " " + shorten(text, width=28, max_lines=1) + " ",
                transform=ax.get_xaxis_transform(), fontsize=7, color="purple", va="top", ha="left",
                clip_on=True)  # fmt: skip
    ax.set_xlim(t0, t1)
    ax.set_ylim(0, peak * 1.45)  # headroom for the lyric labels
    ax.set_ylabel("volume")


def _keep_labels_inside(fig) -> None:
    """A label that would run past its row's right edge (a row's last lines) ends at its marker instead."""
    renderer = fig.canvas.get_renderer()
    with _quiet_missing_glyphs():  # measuring a label lays out its glyphs
        for ax in fig.axes:
            right = ax.get_window_extent(renderer).x1
            for label in ax.texts:
                if label.get_window_extent(renderer).x1 > right:
                    label.set_horizontalalignment("right")
