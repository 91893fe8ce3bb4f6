"""MetaMusic Studio: a local web page over the render engine (``python -m metamusic.studio``).

The studio is a client of the library: a render is the ``generate.py`` command run in a child
process on a run folder under the studio's workdir, its progress is read from that run folder
(plan.json, tasks/*.json, progress.png), and storyboard edits go through storyboard.yaml and
``--from_segment``, exactly as on the command line. This module holds the small pure helpers;
:mod:`metamusic.studio.app` builds the page.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from metamusic.errors import InputError
from metamusic.song.timeline import Segment

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus")
LYRIC_SUFFIXES = (".csv", ".txt", ".lrc", ".srt")
MAX_SONG_BYTES = 50 * 1024 * 1024
MAX_LYRICS_BYTES = 1024 * 1024
TABLE_COLUMNS = ["segment", "start", "end", "kind", "text", "text_weight", "audio_weight"]


def safe_name(name: str, suffixes: Sequence[str], what: str) -> str:
    """A file name safe to store under the workdir: letters, digits, '-', '_' and a known suffix."""
    base = Path(name).name
    suffix = Path(base).suffix.lower()
    if suffix not in suffixes:
        raise InputError(f"{base}: not a {what} file this studio accepts ({', '.join(suffixes)})")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(base).stem).strip("_")[:60] or what
    return stem + suffix


def check_upload(path: Path, limit: int, what: str) -> None:
    """Refuse an uploaded file larger than ``limit`` bytes, naming it."""
    size = path.stat().st_size
    if size > limit:
        raise InputError(f"{path.name}: the {what} is {size / 1e6:.1f} MB; the studio accepts up to "
                         f"{limit / 1e6:.0f} MB")


def inside(root: Path, path: str | Path) -> Path:
    """``path`` resolved, if it lies inside ``root``; else InputError (the studio serves nothing else)."""
    root = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != root and root not in resolved.parents:
        raise InputError(f"{path}: outside the studio's workdir {root}")
    return resolved


def srt_to_vtt(srt: str) -> str:
    """WebVTT text of SubRip captions: a WEBVTT header, '.' for ',' in cue times, no cue numbers."""
    blocks = [b for b in re.split(r"\r?\n\s*\r?\n", srt.strip()) if b.strip()]
    cues = []
    for block in blocks:
        lines = block.splitlines()
        if lines and "-->" not in lines[0] and len(lines) > 1:
            lines = lines[1:]  # the SRT cue number
        if not lines or "-->" not in lines[0]:
            continue
        lines[0] = re.sub(r"(\d\d:\d\d:\d\d),(\d\d\d)", r"\1.\2", lines[0])
        cues.append("\n".join(lines))
    return "WEBVTT\n\n" + "\n\n".join(cues) + ("\n" if cues else "")


def storyboard_rows(segments: Sequence[Segment]) -> list[list]:
    """The storyboard as table rows (TABLE_COLUMNS)."""
    return [[s.index, round(s.start, 3), round(s.end, 3), s.kind, s.text or "", s.text_weight, s.audio_weight]
            for s in segments]


def apply_rows(segments: Sequence[Segment], rows: Sequence[Sequence]) -> list[Segment]:
    """``segments`` with the table's editable columns (kind, text, weights) applied; times stay."""
    if len(rows) != len(segments):
        raise InputError(f"storyboard table: {len(rows)} rows, but the song has {len(segments)} segments; "
                         "only kind, text and weights may be edited")
    out = []
    for seg, row in zip(segments, rows):
        kind = str(row[3]).strip()
        if kind not in ("text", "audio", "fused"):
            raise InputError(f"storyboard table: segment {seg.index} has kind {kind!r}; use text, audio or fused")
        try:
            tw, aw = float(row[5]), float(row[6])
        except (TypeError, ValueError):
            raise InputError(f"storyboard table: segment {seg.index} weights must be numbers") from None
        text = str(row[4]).strip() or None
        out.append(Segment(**{**seg.to_dict(), "kind": kind, "text": text, "text_weight": tw, "audio_weight": aw}))
    return out


def first_edited(old: Sequence[Segment], new: Sequence[Segment]) -> int | None:
    """Index of the first segment whose prompt (kind, text, weights) differs, or None."""
    for a, b in zip(old, new):
        if (a.kind, a.text, a.text_weight, a.audio_weight) != (b.kind, b.text, b.text_weight, b.audio_weight):
            return a.index
    return None


@dataclass
class Progress:
    """How far a render in a run folder is: tasks and segments done, and an ETA."""

    tasks_done: int
    tasks_total: int
    segments_done: int
    segments_total: int
    eta_seconds: float | None

    def line(self) -> str:
        eta = f", about {self.eta_seconds:.0f} s left" if self.eta_seconds is not None else ""
        return (f"segment {min(self.segments_done + 1, self.segments_total)} of {self.segments_total} "
                f"({self.tasks_done}/{self.tasks_total} tasks done{eta})")


def read_progress(run_dir: Path, started: float, done_before: int = 0, now: float | None = None) -> Progress | None:
    """The progress of the render writing ``run_dir`` (None until its plan.json exists)."""
    try:
        plan = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    records = []
    for path in (run_dir / "tasks").glob("*.json"):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # being written
    done_segments = {s["index"] for r in records for s in r.get("segments", [])}
    total = len(plan.get("tasks", []))
    try:
        board = yaml.safe_load((run_dir / "storyboard.yaml").read_text(encoding="utf-8"))
        segments = len(board["segments"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        segments = max(1, len(done_segments))
    now = time.time() if now is None else now
    new = len(records) - done_before
    eta = (now - started) / new * (total - len(records)) if new > 0 else None
    return Progress(len(records), total, len(done_segments), segments, eta)


def list_runs(workdir: Path) -> list[str]:
    """The studio's projects (folders under ``workdir`` holding a song), newest first."""
    if not workdir.is_dir():
        return []
    runs = [p for p in workdir.iterdir() if p.is_dir() and (p / "uploads").is_dir()]
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]
