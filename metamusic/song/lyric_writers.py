"""Write a timeline of lyric lines as LRC, SRT or Music2Video CSV (read back by lyrics.read_lyrics).

* ``.lrc``: ``[mm:ss.xx]text`` per line.
* ``.srt``: numbered SubRip cues with start and end times (``HH:MM:SS,mmm``).
* ``.csv``: the Music2Video format, header ``timestamp,text`` and whole-second ``MM:SS`` times
  (what the original ``generate.py`` parses). Two lines inside one second would share a time,
  so a later line moves on to the next free second (logged). Text with commas or quotes is
  quoted as CSV, so it is kept verbatim.

An empty timeline still gives a well-formed file (tags, header or no cue only).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Sequence

from metamusic.errors import InputError
from metamusic.files import atomic_write_text
from metamusic.media.captions import srt_time
from metamusic.song.lyrics import LyricLine

log = logging.getLogger(__name__)

SUFFIXES = (".lrc", ".srt", ".csv")


def _one_line(text: str) -> str:
    """Text with line breaks turned into spaces (every format holds one line per entry)."""
    return " ".join(text.splitlines()).strip()


def format_lrc(lines: Sequence[LyricLine]) -> str:
    """LRC text: a ``[re:]`` tag naming the tool, then ``[mm:ss.xx]text`` per line."""
    out = ["[re:MetaMusic lyricsync]"]
    for ln in lines:
        cs = int(round(ln.start * 100))
        m, rest = divmod(cs, 6000)
        out.append(f"[{m:02d}:{rest // 100:02d}.{rest % 100:02d}]{_one_line(ln.text)}")
    return "\n".join(out) + "\n"


def format_srt(lines: Sequence[LyricLine]) -> str:
    """SubRip text; a line without an end time lasts until the next line (or two seconds)."""
    cues = []
    for k, ln in enumerate(lines):
        end = ln.end
        if end is None or end <= ln.start:
            end = lines[k + 1].start if k + 1 < len(lines) else ln.start + 2.0
        cues.append(f"{k + 1}\n{srt_time(ln.start)} --> {srt_time(end)}\n{_one_line(ln.text)}\n")
    return "\n".join(cues)


def format_m2v_csv(lines: Sequence[LyricLine]) -> str:
    """Music2Video CSV text: ``timestamp,text`` header, ``MM:SS`` times, strictly increasing."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["timestamp", "text"])
    previous = -1
    for ln in lines:
        second = max(int(math.floor(ln.start)), previous + 1)
        if second != int(math.floor(ln.start)):
            log.info("line %r at %.2f s moved to %d s: Music2Video CSV holds one line per second",
                     ln.text, ln.start, second)
        previous = second
        m, s = divmod(second, 60)
        writer.writerow([f"{m:02d}:{s:02d}", _one_line(ln.text)])
    return buf.getvalue()


_FORMATTERS = {".lrc": format_lrc, ".srt": format_srt, ".csv": format_m2v_csv}


def check_output_suffix(path: str | Path) -> Path:
    """``path`` if its suffix names a format we write; InputError otherwise."""
    path = Path(path)
    if path.suffix.lower() not in _FORMATTERS:
        raise InputError(f"{path}: unknown lyric file type {path.suffix or '(none)'!r}; "
                         f"use one of {', '.join(SUFFIXES)}")
    return path


def write_timed_lyrics(path: str | Path, lines: Sequence[LyricLine]) -> Path:
    """Write ``lines`` to ``path`` (atomically) in the format named by its suffix; return the path."""
    path = check_output_suffix(path)
    if not lines:
        log.warning("%s: no lyric lines to write (nothing was recognised); the file has none", path)
    atomic_write_text(path, _FORMATTERS[path.suffix.lower()](lines))
    return path
