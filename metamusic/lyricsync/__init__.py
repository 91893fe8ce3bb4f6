"""Timed lyrics from the song itself: transcribe it with Whisper, or align plain lyric text to it.

* :func:`transcribe` - no lyric text: Whisper's words (with word timestamps) grouped into lines.
* :func:`align` - plain text, one lyric line per line: each line gets the time where it is sung
  (:func:`metamusic.song.align.align_lines`); the text is kept verbatim.
* :func:`timed_lyrics_for` - the render's hook for ``--align`` / ``--transcribe``.

Whisper checkpoints come from disk only (``bash download_models.sh whisper_small``) and load
weights-only; nothing downloads at run time. Decoding is greedy (temperature 0), so a run is
reproducible. Command line: ``python -m metamusic.lyricsync transcribe|align ...``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from metamusic.errors import InputError
from metamusic.song.align import Alignment, Word, align_lines, phrases
from metamusic.song.lyrics import LyricLine, detect_format

log = logging.getLogger(__name__)

WHISPER_RATE = 16000  # Whisper's input sample rate (Hz)
TIMED_NAME = "lyrics.timed.lrc"  # the timed lyric file --align / --transcribe write into the run folder
TIMED_KEY = "lyrics.timed.json"  # what TIMED_NAME was made from: a resume with the same inputs reuses it


# --------------------------------------------------------------------------- inputs


def read_lyric_text(path: str | Path) -> tuple[list[str], list[int]]:
    """Plain lyric text -> (non-blank lines, stripped, verbatim otherwise; their 1-based line numbers)."""
    from metamusic.song.lyrics import _decode, _split_lines

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such lyrics file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the lyrics file ({exc.strerror or exc})") from None
    rows = [(text.strip(), n) for n, text in enumerate(_split_lines(_decode(data, str(path))), 1)]
    rows = [(text, n) for text, n in rows if text]
    if not rows:
        raise InputError(f"{path}: the lyrics text is empty (give one lyric line per line)")
    return [t for t, _ in rows], [n for _, n in rows]


def has_timestamps(path: str | Path) -> bool:
    """True when the file is already a timed lyric file (any format lyrics.read_lyrics knows)."""
    from metamusic.song.lyrics import _decode

    path = Path(path)
    try:
        text = _decode(path.read_bytes(), str(path))
        detect_format(text, str(path))
    except (InputError, OSError):
        return False
    return True


def check_model(model: str | Path, checkpoints_dir: str | Path = "checkpoints") -> Path:
    """The Whisper checkpoint path for a name or a path; CheckpointError (with the download command) if missing."""
    from metamusic.models.checkpoint_io import check_model_file
    from metamusic.models.whisper_loader import (
        WHAT,
        download_hint,
        resolve_whisper_path,
    )

    path = resolve_whisper_path(model, checkpoints_dir)
    return check_model_file(path, WHAT, download_hint(path))


def load_song(path: str | Path) -> np.ndarray:
    """The song as mono float32 at 16 kHz (InputError for a missing or non-audio file)."""
    from metamusic.song.audio import load_audio, probe_audio

    probe_audio(path)
    return load_audio(path, sample_rate=WHISPER_RATE).samples


# --------------------------------------------------------------------------- recognition


def recognise_words(model: Any, samples: np.ndarray, language: str | None = None) -> list[Word]:
    """Whisper's words with their times for 16 kHz mono ``samples`` (greedy, word timestamps).

    Whisper's word timing (numba) raises torch's intra-op thread count as a side effect; it is
    put back afterwards, so the render that follows keeps the threads it was given
    (``OMP_NUM_THREADS``, Ray's per-task CPUs).
    """
    import torch

    from metamusic.models.whisper_loader import import_whisper

    threads = torch.get_num_threads()
    try:
        whisper = import_whisper()
        duration = len(samples) / WHISPER_RATE
        result = whisper.transcribe(
            model, np.ascontiguousarray(samples, dtype=np.float32), temperature=0.0, word_timestamps=True,
            condition_on_previous_text=False, language=language, verbose=None,
            fp16=next(model.parameters()).device.type == "cuda",
        )
    finally:
        torch.set_num_threads(threads)
    words = []
    for segment in result.get("segments", []):
        for w in segment.get("words", []):
            start, end = float(w["start"]), float(w["end"])
            # a token that is part of a multi-byte character decodes to U+FFFD: not a word
            if w["word"].strip() and "\ufffd" not in w["word"] and start < duration:
                words.append(Word(w["word"], start, min(max(end, start), duration)))
    words.sort(key=lambda w: w.start)
    return words


def _words(song: str | Path, model_path: Path, language: str | None, device: str) -> tuple[list[Word], float]:
    from metamusic.models.whisper_loader import load_whisper

    samples = load_song(song)
    model = load_whisper(model_path, device)
    log.info("recognising the words of %s with %s", song, model_path)
    words = recognise_words(model, samples, language)
    log.info("%d word(s) recognised", len(words))
    return words, len(samples) / WHISPER_RATE


def transcribe(song: str | Path, model: str | Path, *, language: str | None = None, device: str = "cpu",
               checkpoints_dir: str | Path = "checkpoints") -> tuple[LyricLine, ...]:
    """Timed lyric lines transcribed from the song (one line per sung phrase)."""
    model_path = check_model(model, checkpoints_dir)
    words, duration = _words(song, model_path, language, device)
    return phrases(words, duration)


def align(song: str | Path, lyrics: str | Path, model: str | Path, *, language: str | None = None,
          device: str = "cpu", checkpoints_dir: str | Path = "checkpoints") -> Alignment:
    """The plain lyric text's lines timed to where they are sung; unplaced lines are warned about."""
    lines, numbers = read_lyric_text(lyrics)
    model_path = check_model(model, checkpoints_dir)
    words, duration = _words(song, model_path, language, device)
    result = align_lines(words, lines, duration, numbers)
    warn_unplaced(lyrics, result, len(lines))
    return result


def warn_unplaced(source: str | Path, result: Alignment, total: int) -> None:
    """One warning naming the lines whose times were interpolated."""
    if not result.unplaced:
        return
    named = [f"{result.lines[k].line} {result.lines[k].text!r}" for k in result.unplaced]
    more = f" and {len(named) - 5} more" if len(named) > 5 else ""
    log.warning("%s: %d of %d line(s) not found in the song, their times are interpolated between their "
                "neighbours: line %s%s", source, len(named), total, "; line ".join(named[:5]), more)


# --------------------------------------------------------------------------- the render's hook


def timed_lyrics_for(config: Any, run_dir: str | Path) -> Path | None:
    """``--align`` / ``--transcribe``: write the timed lyrics into the run folder and point the config at them.

    Returns the timed lyric file the render will read (None when neither flag is set). A lyric
    file that already has timestamps is used as it is (with a note). Checks the flags, the
    lyric text and the model file before any model loads.
    """
    from metamusic.files import atomic_write_text
    from metamusic.song.lyric_writers import write_timed_lyrics

    music = config.music
    if not (music.align or music.transcribe):
        return None
    if music.align and music.transcribe:
        raise InputError("--align and --transcribe: choose one (--align times your -lyr text, "
                         "--transcribe writes the lyrics from the song)")
    if not music.audio:
        raise InputError(f"--{'align' if music.align else 'transcribe'} needs the song: add -ap SONG")
    if music.transcribe and music.lyrics:
        raise InputError(f"--transcribe writes the lyrics from the song: drop -lyr {music.lyrics}, "
                         "or use --align to time that text")
    if music.align and not music.lyrics:
        raise InputError("--align needs the lyric text: add -lyr LYRICS.txt (one lyric line per line)")
    if music.align and has_timestamps(music.lyrics):
        log.info("%s already has timestamps: used as it is (--align only times plain text)", music.lyrics)
        return Path(music.lyrics)
    out, key_path = Path(run_dir) / TIMED_NAME, Path(run_dir) / TIMED_KEY
    key = _timed_key(config)
    n_lines = _reusable(out, key_path, key)
    if n_lines is not None:
        log.info("timed lyrics: %s (%d lines, made by an earlier run from the same song, text and model)",
                 out, n_lines)
    else:
        options = {"language": music.whisper_language, "device": config.device,
                   "checkpoints_dir": config.models.checkpoints_dir}
        if music.align:
            lines: Sequence[LyricLine] = align(music.audio, music.lyrics, music.whisper_model, **options).lines
        else:
            lines = transcribe(music.audio, music.whisper_model, **options)
        key_path.unlink(missing_ok=True)  # the key goes last: a key beside a timed file means both are complete
        write_timed_lyrics(out, lines)
        atomic_write_text(key_path, json.dumps({**key, "lines": len(lines)}, indent=1) + "\n")
        log.info("timed lyrics: %s (%d lines)", out, len(lines))
        n_lines = len(lines)
    if not n_lines:
        log.warning("no words were recognised in %s: rendering without lyrics", music.audio)
        music.lyrics = None
        return None
    music.lyrics, music.lyrics_format = str(out), None
    return out


def _timed_key(config: Any) -> dict[str, Any]:
    """What a timed lyric file depends on: the mode, the song's and text's bytes, the model file, the language.

    The device is left out on purpose: a render resumed on another device keeps the lyric times its
    finished segments were planned with.
    """
    from metamusic.files import sha256_of
    from metamusic.models.whisper_loader import resolve_whisper_path

    music = config.music
    model = Path(resolve_whisper_path(music.whisper_model, config.models.checkpoints_dir)).expanduser()

    def digest(path: str | Path) -> str | None:  # a missing or unreadable file is reported by the recognition
        try:
            return sha256_of(path)
        except OSError:
            return None

    try:
        stat = model.stat()
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
        size = mtime = None
    return {"mode": "align" if music.align else "transcribe", "song_sha256": digest(music.audio),
            "lyrics_sha256": digest(music.lyrics) if music.align else None,
            "model": str(model.resolve()), "model_bytes": size, "model_mtime_ns": mtime,
            "language": music.whisper_language}


def _reusable(out: Path, key_path: Path, key: dict[str, Any]) -> int | None:
    """The line count of ``out`` when ``key_path`` says it was made from ``key``'s inputs, else None."""
    try:
        saved = json.loads(key_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if None in (key["song_sha256"], key["model_bytes"]) or (key["mode"] == "align" and key["lyrics_sha256"] is None):
        return None
    if not out.is_file() or not isinstance(saved, dict) or {k: saved.get(k) for k in key} != key:
        return None
    lines = saved.get("lines")
    return lines if isinstance(lines, int) and lines >= 0 else None


__all__ = ["align", "transcribe", "timed_lyrics_for", "recognise_words", "read_lyric_text", "has_timestamps"]
