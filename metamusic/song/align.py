"""Timed lyric lines from recognised words: phrase splitting and lyric-text alignment (pure).

A speech recogniser (Whisper) gives words with start and end times. Two uses:

* :func:`phrases` groups them into lyric lines, breaking at pauses, at sentence ends and at a
  maximum line length (transcription: no lyric text given).
* :func:`align_lines` places the user's own lyric lines on the song: a global sequence
  alignment (Needleman and Wunsch, J. Mol. Biol. 48, 1970) of the given words against the
  recognised words, with free recognised words before the first and after the last given word
  (intros, outros), so misheard (substituted), missing (deleted) and extra (inserted) words,
  and choruses that repeat, still line up in order. A line is placed where its matched words
  were sung; a line with too few matches gets a time interpolated between its placed
  neighbours, and is reported.

The user's text is never changed; only times are computed. Times are rounded to centiseconds
(the LRC resolution) and strictly increasing, so every lyric format can hold them.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from metamusic.song.lyrics import LyricLine

TICK = 0.01  # seconds: the smallest step between two lines (LRC has centiseconds)

# Alignment scores: equal word, similar word (misheard), different word, a given word that was
# not heard, a heard word that is not in the text (between the first and last given word).
MATCH, SIMILAR, MISMATCH, MISSING, EXTRA = 2.0, 1.0, -1.0, -1.0, -0.5
SIMILAR_RATIO = 0.75  # difflib ratio from which two words count as the same word misheard
PLACED_FRACTION = 1 / 3  # a line is placed when at least this share of its words matched


@dataclass(frozen=True)
class Word:
    """One recognised word and where it was sung (seconds)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Alignment:
    """The given lines with times, and the indices (0-based) of the lines that were interpolated."""

    lines: tuple[LyricLine, ...]
    unplaced: tuple[int, ...]


def tokens(text: str) -> list[str]:
    """Comparable words of ``text``: case-folded, accents and apostrophes removed, punctuation split."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    plain = re.sub(r"['\u2019`]", "", plain)
    return re.findall(r"\w+", plain)


@functools.lru_cache(maxsize=1 << 16)  # songs repeat words: most pairs recur
def _similarity(a: str, b: str) -> float:
    """Alignment score of given word ``a`` against recognised word ``b``."""
    if a == b:
        return MATCH
    if difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= SIMILAR_RATIO:
        return SIMILAR
    return MISMATCH


def _heard_tokens(words: Sequence[Word]) -> list[tuple[str, int]]:
    """(token, index of its word) for every recognised word; a word of several tokens shares them."""
    out: list[tuple[str, int]] = []
    for i, w in enumerate(words):
        out.extend((t, i) for t in tokens(w.text))
    return out


def align_tokens(given: Sequence[str], heard: Sequence[str]) -> list[int | None]:
    """For each given token, the index of the heard token it matched (None: not heard).

    Global alignment of ``given`` with free leading and trailing ``heard`` tokens; only
    alignments of equal or similar words count as matches.
    """
    n, m = len(given), len(heard)
    neg = float("-inf")
    # score[i][j]: best score of given[:i] against heard[:j] (heard[:j] may start anywhere)
    score = [[0.0] * (m + 1)] + [[neg] * (m + 1) for _ in range(n)]
    move = [[0] * (m + 1) for _ in range(n + 1)]  # 1 diagonal, 2 given word missing, 3 heard word extra
    for i in range(1, n + 1):
        score[i][0] = score[i - 1][0] + MISSING
        move[i][0] = 2
        g = given[i - 1]
        row, up = score[i], score[i - 1]
        for j in range(1, m + 1):
            best, how = up[j - 1] + _similarity(g, heard[j - 1]), 1
            if up[j] + MISSING > best:
                best, how = up[j] + MISSING, 2
            extra = EXTRA if i < n else 0.0  # heard words after the last given word are free
            if row[j - 1] + extra > best:
                best, how = row[j - 1] + extra, 3
            row[j], move[i][j] = best, how
    matched: list[int | None] = [None] * n
    i, j = n, max(range(m + 1), key=lambda k: score[n][k])
    while i > 0:
        how = move[i][j]
        if how == 1:
            if _similarity(given[i - 1], heard[j - 1]) > 0:
                matched[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif how == 2:
            i -= 1
        else:
            j -= 1
    return matched


def _strictly_increasing(times: list[float], duration: float | None) -> list[float]:
    """Times rounded to TICK, at least TICK apart, and (given a duration) before the song's end."""
    out = [round(max(0.0, t) / TICK) * TICK for t in times]
    for k in range(1, len(out)):
        out[k] = max(out[k], out[k - 1] + TICK)
    if duration is not None and out:
        limit = (int(duration / TICK) - 1) * TICK  # the last tick strictly inside the song
        for k in range(len(out) - 1, -1, -1):
            cap = limit if k == len(out) - 1 else out[k + 1] - TICK
            out[k] = max(0.0, min(out[k], cap))
    return [round(t, 2) for t in out]


def _with_ends(starts: list[float], ends: list[float | None], texts: Sequence[str],
               numbers: Sequence[int], duration: float | None) -> tuple[LyricLine, ...]:
    """LyricLines whose end is after their start and no later than the next line's start."""
    lines = []
    for k, (start, text) in enumerate(zip(starts, texts, strict=True)):
        nxt = starts[k + 1] if k + 1 < len(starts) else (duration if duration is not None else None)
        end = ends[k]
        if end is None or end <= start:
            end = nxt if nxt is not None else start + 2.0
        if nxt is not None:
            end = min(end, nxt)
        end = round(max(end, start + TICK), 2)
        lines.append(LyricLine(start=start, text=text, end=end, line=numbers[k]))
    return tuple(lines)


def align_lines(words: Sequence[Word], lines: Sequence[str], duration: float | None = None,
                numbers: Sequence[int] | None = None) -> Alignment:
    """Times for each given lyric line from recognised ``words`` (see the module docstring).

    ``lines`` are kept verbatim and in order; ``numbers`` are their line numbers in the source
    file (default 1, 2, ...). Lines too poorly matched are interpolated between their placed
    neighbours (evenly, from the song's start / to ``duration`` or the last word at the ends).
    """
    numbers = list(numbers) if numbers is not None else list(range(1, len(lines) + 1))
    if len(numbers) != len(lines):
        raise ValueError("numbers must have one entry per line")
    given: list[str] = []
    owner: list[int] = []  # line index of each given token
    for k, line in enumerate(lines):
        for t in tokens(line):
            given.append(t)
            owner.append(k)
    heard = _heard_tokens(words)
    matched = align_tokens(given, [t for t, _ in heard])

    starts: list[float | None] = [None] * len(lines)
    ends: list[float | None] = [None] * len(lines)
    hits = [0] * len(lines)
    for g, h in enumerate(matched):
        if h is None:
            continue
        k, word = owner[g], words[heard[h][1]]
        hits[k] += 1
        starts[k] = word.start if starts[k] is None else min(starts[k], word.start)
        ends[k] = word.end if ends[k] is None else max(ends[k], word.end)
    n_tokens = Counter(owner)
    for k in range(len(lines)):
        if hits[k] == 0 or hits[k] < PLACED_FRACTION * n_tokens[k]:
            starts[k] = ends[k] = None
    unplaced = tuple(k for k, s in enumerate(starts) if s is None)

    # Interpolate each run of unplaced lines between the placed lines around it.
    last_time = duration if duration is not None else max((w.end for w in words), default=float(len(lines)))
    k = 0
    while k < len(lines):
        if starts[k] is not None:
            k += 1
            continue
        run_end = k
        while run_end < len(lines) and starts[run_end] is None:
            run_end += 1
        lo = (ends[k - 1] or starts[k - 1]) if k > 0 else 0.0
        hi = starts[run_end] if run_end < len(lines) else last_time
        count = run_end - k
        # from the song's start the first line may begin at 0; elsewhere lines sit strictly inside
        offset = 0 if k == 0 else 1
        slots = count + offset
        for r in range(count):
            starts[k + r] = lo + (hi - lo) * (r + offset) / max(1, slots)
        k = run_end
    fixed = _strictly_increasing([float(s) for s in starts], duration)
    return Alignment(_with_ends(fixed, ends, lines, numbers, duration), unplaced)


SENTENCE_END = (".", "!", "?", "\u3002", "\uff01", "\uff1f")


def phrases(words: Sequence[Word], duration: float | None = None, max_pause: float = 0.7,
            max_chars: int = 42) -> tuple[LyricLine, ...]:
    """Recognised words grouped into lyric lines: a break at a pause longer than ``max_pause``
    seconds, after a sentence end, and before a line would pass ``max_chars`` characters."""
    groups: list[list[Word]] = []
    for w in words:
        if not w.text.strip() or (duration is not None and w.start >= duration):
            continue
        current = groups[-1] if groups else None
        if current is not None:
            text = "".join(x.text for x in current).strip()
            gap = w.start - current[-1].end
            if (gap <= max_pause and not text.endswith(SENTENCE_END)
                    and len(text + w.text) <= max_chars):
                current.append(w)
                continue
        groups.append([w])
    texts = [" ".join("".join(x.text for x in g).split()) for g in groups]
    starts = _strictly_increasing([g[0].start for g in groups], duration)
    ends: list[float | None] = [g[-1].end for g in groups]
    return _with_ends(starts, ends, texts, list(range(1, len(groups) + 1)), duration)
