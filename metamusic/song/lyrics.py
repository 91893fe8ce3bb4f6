"""Lyric files: every common format read into one timeline of timed lines.

Formats (detected from the content; ``fmt=`` overrides detection):

``m2v-csv``
    Music2Video CSV. First row is the header ``timestamp,text`` (any case, spaces allowed).
    Times: ``MM:SS``, ``MM:SS.ff``, ``HH:MM:SS(.ff)`` or plain seconds (``12.5``). Text may be
    quoted and contain commas. If the header names more than two columns, the extra columns
    are ignored; if it names exactly two, a row's extra fields are an unquoted comma in the
    text and are joined back with ``,``.
``plain``
    One ``MM:SS text`` or ``MM:SS.ff text`` per line (``HH:MM:SS`` also accepted).
``screenplay-csv``
    No header; ``"lyric text",seconds`` per row (any time form above is accepted too).
``lrc``
    ``[mm:ss.xx]``, ``[mm:ss.xxx]`` or ``[mm:ss]`` stamps; several stamps on one line give one
    timed line each with the same text. ID tags (``[ar:]``, ``[ti:]``, ``[al:]``, ``[by:]``,
    ``[au:]``, ``[length:]``, ``[re:]``, ``[ve:]`` and any other ``[name:value]``) are ignored.
    ``[offset:+/-ms]`` is applied with the LRC convention that a positive offset makes the
    lyrics appear sooner: ``t = stamp - offset / 1000`` (LRC format description: "+ shifts time
    up"). Enhanced-LRC word stamps ``<mm:ss.xx>`` are removed from the text.
``srt``
    SubRip cues: optional index line, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text lines joined with
    one space; ``<i>``/``<b>``/``<u>``/``<font>`` tags and ``{\\...}`` overrides are removed; the
    cue end time is kept in :attr:`LyricLine.end`.

Policy:

* Bytes must be UTF-8 (a BOM is allowed); UTF-16/32 is decoded only when a BOM says so.
  Anything else is an error: there is no guessing of legacy encodings.
  CRLF, CR and LF line ends are all accepted; lines are numbered from 1 as an editor shows them.
* A line whose text is empty (after removing stamps and whitespace) is dropped with a logged
  warning; a file with no usable line at all is an error.
* Lines are sorted by start time (LRC multi-stamp lines need it). Two lines with the same start
  time are an error naming both line numbers. In every format but LRC the file order must
  already be increasing: a time smaller than the previous line's is an error.
* Negative times, and LRC times that ``[offset:]`` moves before 0, are errors.
* Text is kept intact: long lines are not truncated here (the CLIP tokenizer does that, with a
  warning).
* Every problem raises :class:`metamusic.errors.InputError` with one line
  ``<file>:<line>: <problem>`` (just ``<file>: <problem>`` when no line applies). For any input
  string, :func:`parse_lyrics` returns :class:`Lyrics` or raises ``InputError``, nothing else.

:func:`clip_to_duration` fits a timeline to a song: lines starting at or after the song's end
are dropped with a warning naming the line, end times past the end are clamped to it, and if no
line is left that is an error (the lyrics almost certainly belong to another song).
"""

from __future__ import annotations

import bisect
import csv
import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from metamusic.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LyricLine:
    """One timed lyric (or scene description) line."""

    start: float  # seconds from the song's start
    text: str
    end: float | None = None  # only formats with end times (SRT) set it
    line: int = 0  # 1-based line number in the source file, for messages


@dataclass(frozen=True)
class Lyrics:
    """A lyric timeline: lines sorted by strictly increasing start time."""

    lines: tuple[LyricLine, ...]
    path: Path | None = None
    format: str = ""  # "m2v-csv" | "plain" | "screenplay-csv" | "lrc" | "srt"


FORMATS: tuple[str, ...] = ("m2v-csv", "plain", "screenplay-csv", "lrc", "srt")

_UNKNOWN_FORMAT = (
    "could not recognise the lyric format (expected M2V CSV `timestamp,text`, plain `MM:SS text`, "
    "screen-play CSV, LRC or SRT)"
)

# ASCII digits only: `\d` and float() would also accept other scripts' digits, "nan", "1e3", "1_0".
_SECONDS = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_CLOCK = r"(?:[0-9]+:){1,2}[0-9]{1,2}(?:\.[0-9]+)?"
_TIME_RE = re.compile(rf"-?(?:{_CLOCK}|{_SECONDS})")
_PLAIN_RE = re.compile(r"[ \t]*((?:[0-9]+:)?[0-9]+:[0-9]{1,2}(?:\.[0-9]+)?)(?:[ \t]+(.*))?")
_LRC_STAMP_RE = re.compile(r"\[([0-9]+):([0-9]{1,2})(?:\.([0-9]{1,3}))?\]")
_LRC_TAG_RE = re.compile(r"\[([A-Za-z#][A-Za-z0-9#_ -]*):([^\]]*)\]")
_LRC_WORD_STAMP_RE = re.compile(r"<[0-9]+:[0-9]{1,2}(?:\.[0-9]{1,3})?>")
_SRT_TIME = r"([0-9]+):([0-9]{1,2}):([0-9]{1,2})[,.]([0-9]{1,3})"
_SRT_TIMING_RE = re.compile(rf"[ \t]*{_SRT_TIME}[ \t]*-->[ \t]*{_SRT_TIME}(?:[ \t].*)?")
_SRT_TAG_RE = re.compile(r"</?(?:b|i|u|font)\b[^>]*>|\{\\[^}]*\}", re.IGNORECASE)


@dataclass(frozen=True)
class _Entry:
    """A parsed line before the file-wide checks: time, raw stamp (for messages) and text."""

    start: float
    stamp: str
    text: str
    line: int
    end: float | None = None


# --------------------------------------------------------------------------- decoding


def _decode(data: bytes, source: str) -> str:
    """Bytes -> text: UTF-8 (optional BOM), or UTF-16/32 only when a BOM declares it."""
    boms = (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    )
    encoding = next((enc for bom, enc in boms if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        if encoding == "utf-8":
            raise InputError(
                f"{source}: not UTF-8 text (legacy encoding?); re-save it as UTF-8"
            ) from None
        raise InputError(f"{source}: not valid {encoding.upper()} text despite its byte-order mark") from None


def _split_lines(text: str) -> list[str]:
    """Text -> physical lines, accepting LF, CRLF and CR ends; a leading BOM is removed."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


# --------------------------------------------------------------------------- time values


def parse_time(stamp: str) -> float:
    """Seconds from ``SS(.ff)``, ``MM:SS(.ff)`` or ``HH:MM:SS(.ff)``; ValueError when malformed."""
    stamp = stamp.strip()
    if not _TIME_RE.fullmatch(stamp):
        raise ValueError(f"{stamp!r} is not a time (expected MM:SS, MM:SS.ff, HH:MM:SS or seconds)")
    if stamp.startswith("-"):
        raise ValueError(f"timestamp {stamp} is negative")
    parts = stamp.split(":")
    seconds = float(parts[-1])
    if len(parts) > 1 and seconds >= 60:
        raise ValueError(f"timestamp {stamp}: seconds must be below 60")
    if len(parts) == 3 and float(parts[1]) >= 60:
        raise ValueError(f"timestamp {stamp}: minutes must be below 60 when hours are given")
    value = 0.0
    for part in parts[:-1]:
        value = value * 60 + float(part)
    value = value * 60 + seconds if len(parts) > 1 else seconds
    if not math.isfinite(value):
        raise ValueError(f"timestamp {stamp} is out of range")
    return value


def format_time(t: float) -> str:
    """``MM:SS.ff`` (``H:MM:SS.ff`` past an hour) for messages."""
    cs = int(round(t * 100))
    h, rest = divmod(cs, 360000)
    m, rest = divmod(rest, 6000)
    s, f = divmod(rest, 100)
    return f"{h}:{m:02d}:{s:02d}.{f:02d}" if h else f"{m:02d}:{s:02d}.{f:02d}"


# --------------------------------------------------------------------------- detection


def _csv_row(line: str) -> list[str]:
    """One physical line split as CSV (quotes, commas in quotes); ValueError when malformed."""
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error as exc:
        raise ValueError(f"malformed CSV ({exc})") from None


def _is_m2v_header(row: list[str]) -> bool:
    """True for ``timestamp,text`` in any case, with spaces anywhere."""
    names = ["".join(cell.split()).lower() for cell in row]
    return len(names) >= 2 and names[0] == "timestamp" and names[1] == "text"


def _is_time(s: str) -> bool:
    """True when ``s`` parses as a non-negative time."""
    try:
        parse_time(s)
    except ValueError:
        return False
    return True


def detect_format(text: str, source: str = "<string>") -> str:
    """The format name (one of FORMATS) of lyric text, judged from its first non-blank lines."""
    content = [ln for ln in _split_lines(text) if ln.strip()]
    if not content:
        raise InputError(f"{source}: no lyric lines (the file is empty)")
    first = content[0]
    if any(_SRT_TIMING_RE.fullmatch(ln) for ln in content[:2]):
        return "srt"
    if _LRC_STAMP_RE.match(first.lstrip()) or _LRC_TAG_RE.match(first.lstrip()):
        return "lrc"
    if _PLAIN_RE.fullmatch(first):
        return "plain"
    try:
        row = _csv_row(first)
    except ValueError:
        row = []
    if _is_m2v_header(row):
        return "m2v-csv"
    if len(row) >= 2 and _is_time(row[-1]) and not _is_time(row[0]):
        return "screenplay-csv"
    raise InputError(f"{source}: {_UNKNOWN_FORMAT}")


# --------------------------------------------------------------------------- format parsers


def _time_or_error(stamp: str, source: str, lineno: int) -> float:
    """parse_time with failures turned into a located InputError."""
    try:
        return parse_time(stamp)
    except ValueError as exc:
        raise InputError(f"{source}:{lineno}: {exc}") from None


def _parse_m2v(lines: list[str], source: str) -> list[_Entry]:
    """Music2Video CSV rows -> entries (header row first)."""
    entries: list[_Entry] = []
    n_columns = 0
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = _csv_row(raw)
        except ValueError as exc:
            raise InputError(f"{source}:{lineno}: {exc}") from None
        if not n_columns:
            if not _is_m2v_header(row):
                raise InputError(f"{source}:{lineno}: expected the header `timestamp,text`")
            n_columns = len(row)
            continue
        stamp = row[0].strip() if row else ""
        if not _is_time(stamp) and len(row) < 2:
            raise InputError(f"{source}:{lineno}: expected `timestamp,text`, got {raw.strip()!r}")
        start = _time_or_error(stamp, source, lineno)
        fields = row[1:] if n_columns == 2 else row[1:2]
        entries.append(_Entry(start, stamp, ",".join(fields).strip(), lineno))
    if not n_columns:
        raise InputError(f"{source}: no lyric lines (the file is empty)")
    return entries


def _parse_plain(lines: list[str], source: str) -> list[_Entry]:
    """``MM:SS text`` lines -> entries."""
    entries: list[_Entry] = []
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        match = _PLAIN_RE.fullmatch(raw)
        if not match:
            raise InputError(
                f"{source}:{lineno}: expected `MM:SS text` (plain lyric format), got {raw.strip()!r}"
            )
        stamp = match.group(1)
        start = _time_or_error(stamp, source, lineno)
        entries.append(_Entry(start, stamp, (match.group(2) or "").strip(), lineno))
    return entries


def _parse_screenplay(lines: list[str], source: str) -> list[_Entry]:
    """``"text",seconds`` rows -> entries; unquoted commas in the text are kept."""
    entries: list[_Entry] = []
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = _csv_row(raw)
        except ValueError as exc:
            raise InputError(f"{source}:{lineno}: {exc}") from None
        if len(row) < 2:
            raise InputError(
                f'{source}:{lineno}: expected `"lyric text",seconds` (screen-play CSV), got {raw.strip()!r}'
            )
        stamp = row[-1].strip()
        start = _time_or_error(stamp, source, lineno)
        entries.append(_Entry(start, stamp, ",".join(row[:-1]).strip(), lineno))
    return entries


def _parse_lrc(lines: list[str], source: str) -> list[_Entry]:
    """LRC lines -> entries (one per stamp), ``[offset:]`` applied, word stamps removed."""
    offset_ms = 0
    offset_line = 0
    timed: list[tuple[int, list[tuple[str, float]], str]] = []
    for lineno, raw in enumerate(lines, 1):
        body = raw.strip()
        if not body:
            continue
        stamps: list[tuple[str, float]] = []
        pos = 0
        while match := _LRC_STAMP_RE.match(body, pos):
            minutes, seconds, fraction = match.groups()
            if int(seconds) >= 60:
                raise InputError(
                    f"{source}:{lineno}: timestamp {match.group(0)}: seconds must be below 60"
                )
            frac = int(fraction) / 10 ** len(fraction) if fraction else 0.0
            value = float(minutes) * 60 + int(seconds) + frac
            if not math.isfinite(value):
                raise InputError(f"{source}:{lineno}: timestamp {match.group(0)} is out of range")
            stamps.append((match.group(0), value))
            pos = match.end()
            while pos < len(body) and body[pos] in " \t":
                pos += 1
        if stamps:
            timed.append((lineno, stamps, body[pos:]))
            continue
        tag = _LRC_TAG_RE.fullmatch(body)
        if not tag:
            raise InputError(
                f"{source}:{lineno}: expected `[mm:ss.xx] text` or an `[ar:...]`-style tag (LRC), "
                f"got {body!r}"
            )
        if tag.group(1).strip().lower() == "offset":
            value = tag.group(2).strip()
            if not re.fullmatch(r"[+-]?[0-9]{1,9}", value):
                raise InputError(
                    f"{source}:{lineno}: [offset:] must be whole milliseconds like +250 or -100, "
                    f"got {value!r}"
                )
            if offset_line:
                raise InputError(
                    f"{source}:{lineno}: a second [offset:] tag (the first is on line {offset_line})"
                )
            offset_ms, offset_line = int(value), lineno
    entries: list[_Entry] = []
    for lineno, stamps, rest in timed:
        words = _LRC_WORD_STAMP_RE.sub(" ", rest)
        text = " ".join(words.split()) if words != rest else rest.strip()
        for stamp, value in stamps:
            start = round(value - offset_ms / 1000, 6) if offset_ms else value
            if start < 0:
                raise InputError(
                    f"{source}:{lineno}: timestamp {stamp} with [offset:{offset_ms:+d}] falls before the song's start"
                )
            entries.append(_Entry(start, stamp, text, lineno))
    return entries


def _parse_srt(lines: list[str], source: str) -> list[_Entry]:
    """SubRip cues -> entries with end times; cue text lines joined with a space."""

    def srt_seconds(h: str, m: str, s: str, ms: str) -> float:
        if int(m) >= 60 or int(s) >= 60:
            raise InputError(
                f"{source}:{i + 1}: minutes and seconds must be below 60 in {lines[i].strip()!r}"
            )
        return float(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 10 ** len(ms)

    def is_index_before_timing(k: int) -> bool:
        index = lines[k].strip()
        return (
            index.isascii() and index.isdigit() and k + 1 < len(lines)
            and bool(_SRT_TIMING_RE.fullmatch(lines[k + 1]))
        )

    entries: list[_Entry] = []
    i, n = 0, len(lines)
    while i < n:
        if not lines[i].strip():
            i += 1
            continue
        if is_index_before_timing(i):
            i += 1
        timing = _SRT_TIMING_RE.fullmatch(lines[i])
        if not timing:
            raise InputError(
                f"{source}:{i + 1}: expected an SRT cue time `HH:MM:SS,mmm --> HH:MM:SS,mmm`, "
                f"got {lines[i].strip()!r}"
            )
        groups = timing.groups()
        start, end = srt_seconds(*groups[:4]), srt_seconds(*groups[4:])
        if not (math.isfinite(start) and math.isfinite(end)):
            raise InputError(f"{source}:{i + 1}: cue time out of range")
        if end < start:
            raise InputError(f"{source}:{i + 1}: cue ends before it starts ({lines[i].strip()})")
        stamp = lines[i].split("-->")[0].strip()
        cue_line = i + 1
        i += 1
        texts: list[str] = []
        while (
            i < n and lines[i].strip()
            and not is_index_before_timing(i) and not _SRT_TIMING_RE.fullmatch(lines[i])
        ):
            texts.append(_SRT_TAG_RE.sub("", lines[i]).strip())
            i += 1
        text = " ".join(t for t in texts if t)
        entries.append(_Entry(start, stamp, text, cue_line, end))
    return entries


_PARSERS = {
    "m2v-csv": _parse_m2v,
    "plain": _parse_plain,
    "screenplay-csv": _parse_screenplay,
    "lrc": _parse_lrc,
    "srt": _parse_srt,
}


# --------------------------------------------------------------------------- public API


def _check_timeline(entries: list[_Entry], fmt: str, source: str) -> tuple[LyricLine, ...]:
    """Drop empty lines (warn), enforce file order (not LRC) and unique times, sort by time."""
    kept: list[_Entry] = []
    for entry in entries:
        if entry.text:
            kept.append(entry)
        else:
            log.warning("%s:%d: lyric line at %s has no text; dropped", source, entry.line, entry.stamp)
    if not kept:
        raise InputError(f"{source}: no usable lyric lines (no timed line has any text)")
    if fmt != "lrc":
        for prev, cur in zip(kept, kept[1:]):
            if cur.start < prev.start:
                raise InputError(
                    f"{source}:{cur.line}: timestamp {cur.stamp} is earlier than the previous line's "
                    f"{prev.stamp} (timestamps must increase)"
                )
    ordered = sorted(kept, key=lambda e: (e.start, e.line))
    for prev, cur in zip(ordered, ordered[1:]):
        if cur.start == prev.start:
            raise InputError(
                f"{source}:{cur.line}: timestamp {cur.stamp} duplicates line {prev.line}'s {prev.stamp} "
                "(each lyric line needs its own time)"
            )
    return tuple(LyricLine(start=e.start, text=e.text, end=e.end, line=e.line) for e in ordered)


def parse_lyrics(text: str, fmt: str | None = None, source: str = "<string>") -> Lyrics:
    """A Lyrics timeline from lyric text in any supported format (``fmt`` overrides detection)."""
    if not isinstance(text, str):
        raise InputError(f"{source}: lyric text must be a string, got {type(text).__name__}")
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"{source}: unknown lyric format {fmt!r} (choose one of {', '.join(FORMATS)})")
    fmt = fmt or detect_format(text, source)
    lines = _split_lines(text)
    if not any(ln.strip() for ln in lines):
        raise InputError(f"{source}: no lyric lines (the file is empty)")
    entries = _PARSERS[fmt](lines, source)
    return Lyrics(lines=_check_timeline(entries, fmt, source), path=None, format=fmt)


def read_lyrics(path: str | Path, fmt: str | None = None) -> Lyrics:
    """A Lyrics timeline read from a lyric file (UTF-8, or UTF-16/32 with a BOM)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such lyrics file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a lyrics file") from None
    except PermissionError:
        raise InputError(f"{path}: cannot read the lyrics file (permission denied)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the lyrics file ({exc.strerror or exc})") from None
    if not data:
        raise InputError(f"{path}: no lyric lines (the file is empty)")
    lyrics = parse_lyrics(_decode(data, str(path)), fmt=fmt, source=str(path))
    return replace(lyrics, path=path)


def clip_to_duration(lyrics: Lyrics, duration: float) -> Lyrics:
    """Lyrics fitted to a song of ``duration`` s: late lines dropped (warned), end times clamped."""
    try:
        duration = float(duration)
    except (TypeError, ValueError):
        raise ValueError(f"song duration must be a number of seconds, got {duration!r}") from None
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"song duration must be a positive number of seconds, got {duration!r}")
    source = str(lyrics.path) if lyrics.path is not None else "<lyrics>"
    kept: list[LyricLine] = []
    for ln in lyrics.lines:
        if ln.start >= duration:
            log.warning(
                "%s:%d: lyric %r at %s starts at or after the song's end (%s); dropped",
                source, ln.line, ln.text, format_time(ln.start), format_time(duration),
            )
            continue
        if ln.end is not None and ln.end > duration:
            ln = replace(ln, end=duration)
        kept.append(ln)
    if lyrics.lines and not kept:
        raise InputError(
            f"{source}: every lyric line starts after the song ends at {format_time(duration)} "
            "(lyrics for another song?)"
        )
    return replace(lyrics, lines=tuple(kept))


def warn_long_lines(lyrics: Lyrics, count_tokens, limit: int = 77, compose=lambda text: text) -> list[int]:
    """Log one warning per lyric whose prompt ``compose(text)`` is over ``limit`` tokens (CLIP
    ignores the rest), naming its file and line; return those line numbers.

    ``count_tokens`` maps a prompt to its token count (``metamusic.models.clip.token_count``).
    """
    long_lines = []
    source = lyrics.path or "lyrics"
    for ln in lyrics.lines:
        n = count_tokens(compose(ln.text))
        if n > limit:
            long_lines.append(ln.line)
            log.warning("%s:%d: this lyric's prompt is %d tokens long; CLIP reads only the first %d, the rest "
                        "is ignored (shorten the line, --theme or --prompt_prefix)", source, ln.line, n, limit)
    return long_lines


def active_line_at(lyrics: Lyrics, t: float) -> int | None:
    """Index of the lyric line shown at time ``t``: the last one started, unless its end passed."""
    starts = [ln.start for ln in lyrics.lines]
    i = bisect.bisect_right(starts, t) - 1
    if i < 0:
        return None
    end = lyrics.lines[i].end
    if end is not None and t >= end:
        return None
    return i
