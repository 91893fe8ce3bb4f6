"""The evaluation report: metrics.csv (one row per segment), summary.json and plot.png."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from metamusic.evaluate.scoring import EvaluationResult

CSV_COLUMNS = ("index", "start", "end", "kind", "text", "n_frames", "text_alignment", "audio_alignment",
               "smoothness", "pixel_change")


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
