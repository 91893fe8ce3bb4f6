"""Lyric captions: burned into frames (PIL, outlined text) or soft (an SRT muxed as mov_text).

Burned captions
    :func:`render_caption` draws a caption onto one ``(H, W, 3)`` uint8 frame. The text is
    wrapped by its measured pixel width (``max_width_frac`` of the frame); text without spaces in
    CJK scripts breaks between any two characters, and a word wider than a whole line is broken
    between characters too. An outline (PIL's ``stroke_width``/``stroke_fill``) keeps it readable
    on any background. The font size is ``size_frac`` of the frame height, shrunk only when the
    wrapped block would not fit between the margins. Layout and glyph masks are cached per
    (text, frame size, style), so a caption repeated on many frames costs one alpha blend each.

Glyph coverage
    PIL exposes no character map, so :func:`check_font_covers` renders each character and
    compares its glyph mask with the font's ``.notdef`` glyph (the box drawn for characters the
    font lacks), obtained by rendering ``chr(0x10FFFF)``, a noncharacter that no font maps. With
    the bundled DejaVu Sans every CJK ideograph renders as exactly that box, while Latin, Greek,
    Cyrillic and accented letters do not. Whitespace and control/format characters are skipped
    (they legitimately draw nothing, and controls also map to ``.notdef``). Call it (or
    :func:`check_lyrics_font`) once before rendering: :func:`render_caption` itself never
    raises for missing glyphs, it would draw boxes.

Soft subtitles
    :func:`write_srt` / :func:`parse_srt` write and read SubRip, :func:`write_vtt` WebVTT (for a
    web page's ``<track>``: browsers read neither SRT nor MP4 subtitle streams); :func:`caption_intervals` turns a
    :class:`~metamusic.song.lyrics.Lyrics` into caption intervals; :func:`add_soft_subtitles` copies a
    video's streams and adds the SRT as a ``mov_text`` subtitle stream (mp4/mov containers).
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import re
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from metamusic.errors import InputError, MetaMusicError
from metamusic.files import atomic_path, atomic_write_text

if TYPE_CHECKING:  # captions only read `lyrics.lines`; media does not depend on song at run time
    from metamusic.song.lyrics import Lyrics

__all__ = [
    "CaptionStyle",
    "add_soft_subtitles",
    "caption_intervals",
    "caption_text_at",
    "check_font_covers",
    "check_lyrics_font",
    "default_font_path",
    "disable_subtitle_tracks",
    "format_srt",
    "format_vtt",
    "missing_glyphs",
    "parse_srt",
    "render_caption",
    "wrap_caption",
    "write_srt",
    "write_vtt",
]

POSITIONS: tuple[str, ...] = ("bottom", "top", "center")
_MIN_FONT_PX = 6
_LINE_SPACING = 1.1  # line pitch as a multiple of the font's ascent + descent
_NOTDEF_PROBE = chr(0x10FFFF)  # a noncharacter: every font draws its .notdef glyph for it
_COVERAGE_PX = 32  # font size used to compare glyph masks
_SOFT_SUB_SUFFIXES = (".mp4", ".m4v", ".mov")

# Scripts written without spaces: a line may break between any two of these characters.
_CJK = (
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi radicals
    "\u3000-\u303f"  # CJK symbols and punctuation
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f\u31a0-\u31ff"  # Bopomofo, Katakana extensions
    "\u3400-\u4dbf\u4e00-\u9fff"  # CJK unified ideographs (+ extension A)
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff00-\uffef"  # half/full-width forms
    "\U00020000-\U0003ffff"  # CJK extensions B..
)
_TOKEN_RE = re.compile(rf"\s+|[{_CJK}]|[^\s{_CJK}]+")


@dataclass(frozen=True)
class CaptionStyle:
    """How burned captions look; fractions are of the frame height (sizes) or width (wrap)."""

    font: str | None = None  # path of a .ttf/.otf; None: DejaVu Sans shipped with matplotlib
    size_frac: float = 0.06  # font size / frame height
    position: str = "bottom"  # "bottom" | "top" | "center"
    margin_frac: float = 0.05  # gap to the top/bottom edge / frame height
    color: tuple[int, int, int] = (255, 255, 255)
    outline_color: tuple[int, int, int] = (0, 0, 0)
    outline_frac: float = 0.08  # outline width / font size
    max_width_frac: float = 0.9  # widest line / frame width

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise InputError(f"caption position must be one of {', '.join(POSITIONS)}, got {self.position!r}")
        for name, lo, hi in (("size_frac", 0.0, 1.0), ("max_width_frac", 0.0, 1.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo < v <= hi):
                raise InputError(f"caption {name} must be in ({lo}, {hi}], got {v!r}")
        for name in ("margin_frac", "outline_frac"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 0.5):
                raise InputError(f"caption {name} must be in [0, 0.5), got {v!r}")
        for name in ("color", "outline_color"):
            v = getattr(self, name)
            if not (len(v) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in v)):
                raise InputError(f"caption {name} must be three integers 0..255, got {v!r}")
            object.__setattr__(self, name, tuple(v))  # lists from a config file -> hashable


# ----------------------------------------------------------------------------------------------
# Fonts


def default_font_path() -> Path:
    """DejaVu Sans as shipped inside matplotlib's mpl-data (a runtime dependency already)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def _font_path(font: str | os.PathLike | None) -> str:
    return str(default_font_path() if font is None else Path(font))


@functools.lru_cache(maxsize=32)
def _load_font(path: str, size: int, basic: bool = False) -> ImageFont.FreeTypeFont:
    """A FreeType font at ``size`` px; InputError naming the file when it cannot be read."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: font file not found; pass a .ttf/.otf file with --caption_font")
    engine = ImageFont.Layout.BASIC if basic else None
    try:
        return ImageFont.truetype(path, size, layout_engine=engine)
    except OSError as exc:
        raise InputError(
            f"{path}: not a readable TrueType/OpenType font ({exc}); pass a .ttf/.otf with --caption_font"
        ) from None


def _glyph_signature(font: ImageFont.FreeTypeFont, ch: str) -> tuple[tuple[int, int], bytes]:
    """Size and pixels of the glyph mask that ``font`` draws for ``ch``."""
    mask = font.getmask(ch)
    return mask.size, bytes(mask)


def _needs_glyph(ch: str) -> bool:
    """False for characters that draw nothing by design: whitespace, controls, format marks."""
    return not (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp"))


def missing_glyphs(text: str, font_path: str | os.PathLike | None = None) -> str:
    """The distinct characters of ``text`` (in order) that the font draws as its .notdef box."""
    font = _load_font(_font_path(font_path), _COVERAGE_PX, basic=True)
    notdef = _glyph_signature(font, _NOTDEF_PROBE)
    missing: list[str] = []
    for ch in dict.fromkeys(text):
        if _needs_glyph(ch) and _glyph_signature(font, ch) == notdef:
            missing.append(ch)
    return "".join(missing)


def check_font_covers(text: str, font_path: str | os.PathLike | None = None, line: int | None = None) -> None:
    """Raise InputError when the font has no glyph for some character of ``text``.

    ``line`` (the lyric's 1-based line number in its file) is named in the message when given.
    """
    missing = missing_glyphs(text, font_path)
    if not missing:
        return
    shown = missing if len(missing) <= 12 else missing[:12] + "..."
    where = f"lyric line {line}" if line is not None else "the caption text"
    raise InputError(
        f"{_font_path(font_path)}: font has no glyphs for '{shown}' in {where}; "
        "pass a font that covers them with --caption_font"
    )


def check_lyrics_font(lyrics: Lyrics, font_path: str | os.PathLike | None = None) -> None:
    """:func:`check_font_covers` for every line of ``lyrics``; the first failing line is named."""
    for ln in lyrics.lines:
        check_font_covers(ln.text, font_path, line=ln.line or None)


# ----------------------------------------------------------------------------------------------
# Burned captions


def wrap_caption(text: str, font: ImageFont.FreeTypeFont, max_width: float, stroke_width: int = 0) -> list[str]:
    """Greedy line breaking of ``text`` so each line's measured width (with outline) fits ``max_width``.

    Breaks at whitespace, between CJK characters, and inside a word only when the word alone is
    wider than a line. Explicit newlines are kept; blank lines are dropped.
    """

    def fits(s: str) -> bool:
        return font.getlength(s) + 2 * stroke_width <= max_width

    lines: list[str] = []
    for paragraph in text.splitlines():
        cur = ""
        for tok in _TOKEN_RE.findall(paragraph):
            if tok.isspace():
                if cur:
                    cur += " "
                continue
            if fits(cur + tok):
                cur += tok
                continue
            if cur.strip():
                lines.append(cur.rstrip())
            cur = ""
            if fits(tok):
                cur = tok
                continue
            for ch in tok:  # a word wider than a whole line: break between characters
                if cur and not fits(cur + ch):
                    lines.append(cur)
                    cur = ""
                cur += ch
        if cur.strip():
            lines.append(cur.rstrip())
    return lines


@dataclass(frozen=True)
class _Layer:
    """A caption's alpha masks, placed at rows ``y0:y0+h`` and columns ``x0:x0+w`` of the frame."""

    y0: int
    x0: int
    outline: np.ndarray  # (h, w, 1) float32 in [0, 1]: outline and text
    fill: np.ndarray  # (h, w, 1) float32 in [0, 1]: text only


def _layout(text: str, width: int, height: int, style: CaptionStyle):
    """Font, stroke width, wrapped lines and line pitch for ``text`` on a ``width x height`` frame."""
    path = _font_path(style.font)
    avail_h = height * (1 - 2 * style.margin_frac)
    size = max(_MIN_FONT_PX, round(style.size_frac * height))
    while True:
        font = _load_font(path, size)
        sw = max(1, round(style.outline_frac * size)) if style.outline_frac > 0 else 0
        lines = wrap_caption(text, font, style.max_width_frac * width, sw)
        ascent, descent = font.getmetrics()
        pitch = math.ceil((ascent + descent) * _LINE_SPACING)
        block_h = 2 * sw + (len(lines) - 1) * pitch + ascent + descent
        if block_h <= avail_h or size <= _MIN_FONT_PX:
            return font, sw, lines, pitch, block_h
        size = max(_MIN_FONT_PX, int(size * 0.85))


@functools.lru_cache(maxsize=16)
def _caption_layer(text: str, width: int, height: int, style: CaptionStyle) -> _Layer | None:
    """Rendered alpha masks of one caption for one frame size (cached: captions repeat per frame)."""
    font, sw, lines, pitch, block_h = _layout(text, width, height, style)
    if not lines:
        return None
    outline = Image.new("L", (width, block_h), 0)
    fill = Image.new("L", (width, block_h), 0)
    d_out, d_fill = ImageDraw.Draw(outline), ImageDraw.Draw(fill)
    for i, line in enumerate(lines):
        xy = (width / 2, sw + i * pitch)
        d_out.text(xy, line, fill=255, font=font, anchor="ma", stroke_width=sw, stroke_fill=255)
        # Same call with a black stroke: the text lands exactly where it does in the outline layer.
        d_fill.text(xy, line, fill=255, font=font, anchor="ma", stroke_width=sw, stroke_fill=0)
    margin = round(style.margin_frac * height)
    if style.position == "bottom":
        top = height - margin - block_h
    elif style.position == "top":
        top = margin
    else:
        top = (height - block_h) // 2
    box = outline.getbbox()
    if box is None:
        return None
    x0, by0, x1, by1 = box
    # Clip to the frame (a caption taller than the frame at the minimum font size loses rows).
    by0 = max(by0, -top)
    by1 = min(by1, height - top)
    if by1 <= by0:
        return None
    a_out = np.asarray(outline, dtype=np.float32)[by0:by1, x0:x1, None] / 255.0  # (h, w, 1)
    a_fill = np.asarray(fill, dtype=np.float32)[by0:by1, x0:x1, None] / 255.0  # (h, w, 1)
    a_out.setflags(write=False)
    a_fill.setflags(write=False)
    return _Layer(top + by0, x0, a_out, a_fill)


def render_caption(frame: np.ndarray, text: str, style: CaptionStyle = CaptionStyle()) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3) uint8 with ``text`` drawn as an outlined, wrapped caption."""
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
        got = f"{getattr(frame, 'shape', None)} {getattr(frame, 'dtype', type(frame).__name__)}"
        raise ValueError(f"frame must be an (H, W, 3) uint8 array, got {got}")
    out = frame.copy()
    if not text or not text.strip():
        return out
    height, width = frame.shape[:2]
    layer = _caption_layer(text, width, height, style)
    if layer is None:
        return out
    h, w = layer.outline.shape[:2]
    region = out[layer.y0 : layer.y0 + h, layer.x0 : layer.x0 + w].astype(np.float32)  # (h, w, 3)
    region = region * (1 - layer.outline) + np.float32(style.outline_color) * layer.outline
    region = region * (1 - layer.fill) + np.float32(style.color) * layer.fill
    out[layer.y0 : layer.y0 + h, layer.x0 : layer.x0 + w] = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------
# SubRip


def srt_time(t: float) -> str:
    """Seconds as a SubRip time stamp, ``HH:MM:SS,mmm``."""
    ms = int(round(t * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def format_srt(lines: Sequence[tuple[float, float, str]]) -> str:
    """SubRip text for ``(start, end, text)`` cues (seconds); cues with empty text are skipped."""
    blocks: list[str] = []
    for start, end, text in lines:
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise ValueError(f"subtitle cue needs 0 <= start < end, got {start!r}..{end!r} for {text!r}")
        body = "\n".join(part.strip() for part in text.splitlines() if part.strip())
        if not body:
            continue
        blocks.append(f"{len(blocks) + 1}\n{srt_time(start)} --> {srt_time(end)}\n{body}\n")
    return "\n".join(blocks)


def write_srt(lines: Sequence[tuple[float, float, str]], path: str | os.PathLike) -> None:
    """Write ``(start, end, text)`` cues to ``path`` as a UTF-8 SubRip file, atomically."""
    atomic_write_text(path, format_srt(lines))


def _vtt_time(t: float) -> str:
    return srt_time(t).replace(",", ".")


def format_vtt(lines: Sequence[tuple[float, float, str]]) -> str:
    """WebVTT text (what browsers' ``<track>`` reads) for ``(start, end, text)`` cues; empty cues skipped.

    Cue text is escaped (``&``, ``<``, ``>``) so a lyric is never read as markup, and a cue never
    holds a blank line, which would end it.
    """
    blocks: list[str] = ["WEBVTT\n"]
    for start, end, text in lines:
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise ValueError(f"subtitle cue needs 0 <= start < end, got {start!r}..{end!r} for {text!r}")
        rows = [part.strip() for part in text.splitlines() if part.strip()]
        body = "\n".join(r.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for r in rows)
        if body:
            blocks.append(f"{_vtt_time(start)} --> {_vtt_time(end)}\n{body}\n")
    return "\n".join(blocks)


def write_vtt(lines: Sequence[tuple[float, float, str]], path: str | os.PathLike) -> None:
    """Write ``(start, end, text)`` cues to ``path`` as a UTF-8 WebVTT file, atomically."""
    atomic_write_text(path, format_vtt(lines))


_SRT_T = r"([0-9]+):([0-9]{1,2}):([0-9]{1,2})[,.]([0-9]{1,3})"
_SRT_TIMING = re.compile(rf"\s*{_SRT_T}\s*-->\s*{_SRT_T}(?:\s.*)?")


def _srt_seconds(h: str, m: str, s: str, frac: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000


def parse_srt(text: str, source: str = "<srt>") -> list[tuple[float, float, str]]:
    """``(start, end, text)`` cues of SubRip ``text``; multi-line cue text is joined with newlines.

    The inverse of :func:`format_srt` (times to the millisecond). Malformed cues raise
    InputError ``<source>:<line>: <problem>``.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues: list[tuple[float, float, str]] = []
    i = 0
    while i < len(rows):
        if not rows[i].strip():
            i += 1
            continue
        if rows[i].strip().isdigit() and i + 1 < len(rows) and _SRT_TIMING.fullmatch(rows[i + 1]):
            i += 1  # the cue's index line
        m = _SRT_TIMING.fullmatch(rows[i])
        if m is None:
            raise InputError(
                f"{source}:{i + 1}: expected a SubRip timing line 'HH:MM:SS,mmm --> HH:MM:SS,mmm', "
                f"got {rows[i].strip()!r}"
            )
        start, end = _srt_seconds(*m.groups()[:4]), _srt_seconds(*m.groups()[4:])
        if end < start:
            raise InputError(f"{source}:{i + 1}: cue ends before it starts")
        i += 1
        body: list[str] = []
        while i < len(rows) and rows[i].strip():
            body.append(rows[i].strip())
            i += 1
        cues.append((start, end, "\n".join(body)))
    return cues


def caption_intervals(lyrics: Lyrics, duration: float) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` per lyric line: shown from its start to its own end when set, else
    to the next line's start (the last to the song's end); never past the next line's start or
    the song's end, so at most one caption shows at a time (as :func:`metamusic.song.lyrics.active_line_at`).
    """
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"song duration must be a positive number of seconds, got {duration!r}")
    lines = lyrics.lines
    out: list[tuple[float, float, str]] = []
    for k, ln in enumerate(lines):
        if ln.start >= duration or not ln.text.strip():
            continue
        next_start = lines[k + 1].start if k + 1 < len(lines) else duration
        end = min(ln.end if ln.end is not None else next_start, next_start, duration)
        if end > ln.start:
            out.append((ln.start, end, ln.text))
    return out


def caption_text_at(intervals: Sequence[tuple[float, float, str]], t: float) -> str:
    """The caption shown at time ``t`` (``""`` for none); ``intervals`` sorted by start, not overlapping."""
    k = bisect.bisect_right([a for a, _, _ in intervals], t) - 1
    if k >= 0 and t < intervals[k][1]:
        return intervals[k][2]
    return ""


# ----------------------------------------------------------------------------------------------
# Soft subtitles


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.lower().startswith(("conversion failed", "error opening output")):
            return ln
    return lines[-1] if lines else "no error message"


def add_soft_subtitles(
    video: str | os.PathLike, srt: str | os.PathLike, out: str | os.PathLike, language: str = "eng",
    default: bool = True,
) -> None:
    """Write ``out``: ``video``'s video/audio streams copied plus ``srt`` as a mov_text subtitle stream.

    ``out`` must be .mp4/.m4v/.mov (mov_text lives in MP4/QuickTime); ``language`` is an
    ISO 639-2 code. ``default`` marks the track as shown by default; pass False when the same
    captions are burned into the frames, or players draw them twice. ``out`` may equal
    ``video``: the result is written to a temporary file and renamed onto ``out`` only when
    ffmpeg succeeded.
    """
    from metamusic.media.video import ffmpeg_exe

    video, srt, out = Path(video), Path(srt), Path(out)
    for p, what in ((video, "video"), (srt, "subtitle file")):
        if not p.is_file():
            raise InputError(f"{p}: {what} not found")
    if out.suffix.lower() not in _SOFT_SUB_SUFFIXES:
        raise InputError(
            f"{out}: soft subtitles need an .mp4, .m4v or .mov output (mov_text), "
            f"got {out.suffix or 'no extension'!r}"
        )
    if not re.fullmatch(r"[a-z]{3}", language):
        raise InputError(f"subtitle language must be a 3-letter ISO 639-2 code such as 'eng', got {language!r}")
    with atomic_path(out) as tmp:
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-y",
            "-i", str(video.resolve()),
            "-f", "srt", "-i", str(srt.resolve()),
            "-map", "0:v", "-map", "0:a?", "-map", "1:s",
            "-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text",
            "-metadata:s:s:0", f"language={language}",
            "-disposition:s:0", "default" if default else "0",
            "-movflags", "+faststart",
            str(tmp.resolve()),
        ]  # fmt: skip
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0:
            msg = _last_error_line(proc.stderr.decode("utf-8", "replace"))
            raise MetaMusicError(f"ffmpeg failed while adding subtitles {srt} to {video}: {msg}")
        if not default:
            # ffmpeg's MP4 muxer enables the first track of each kind whatever its disposition,
            # and players show an enabled subtitle track: clear the flag in the written file.
            disable_subtitle_tracks(tmp)


_SUBTITLE_HANDLERS = (b"sbtl", b"text", b"subt")  # MP4 / QuickTime handler types of subtitle tracks


def _boxes(data: bytes, start: int, end: int):
    """``(type, body_start, box_end)`` of the ISO-BMFF boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def disable_subtitle_tracks(path: str | os.PathLike) -> int:
    """Clear the "track enabled" flag (ISO/IEC 14496-12 ``tkhd`` flags bit 0) of every subtitle
    track of the MP4 at ``path``, in place; return how many tracks were changed.

    Players (and ffmpeg's ``(default)``) treat an enabled subtitle track as shown by default.
    """
    path = Path(path)
    changed = 0
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        pos = 0
        while pos + 8 <= size:  # top-level boxes: read headers only, the media data is skipped
            f.seek(pos)
            head = f.read(16)
            box, header = int.from_bytes(head[:4], "big"), 8
            if box == 1:
                box, header = int.from_bytes(head[8:16], "big"), 16
            elif box == 0:
                box = size - pos
            if box < header:
                break
            if head[4:8] == b"moov":
                f.seek(pos)
                moov = f.read(box)
                for kind, body, end in _boxes(moov, header, len(moov)):
                    if kind != b"trak":
                        continue
                    tkhd = handler = None
                    for sub, sub_body, sub_end in _boxes(moov, body, end):
                        if sub == b"tkhd":
                            tkhd = sub_body
                        elif sub == b"mdia":
                            for leaf, leaf_body, _ in _boxes(moov, sub_body, sub_end):
                                if leaf == b"hdlr":
                                    handler = moov[leaf_body + 8:leaf_body + 12]
                    if tkhd is not None and handler in _SUBTITLE_HANDLERS and moov[tkhd + 3] & 1:
                        f.seek(pos + tkhd + 3)  # the low byte of the 24-bit flags after the version
                        f.write(bytes([moov[tkhd + 3] & ~1 & 0xFF]))
                        changed += 1
            pos += box
    return changed
