"""--align / --transcribe on a resumed render: the timed lyrics of the first run are reused, not recognised again.

Whisper is replaced by a counting stand-in here (what it returns does not matter, only whether it
runs); the real model path is covered by test_lyricsync.py.
"""

from __future__ import annotations

import json

import pytest

from metamusic import lyricsync
from metamusic.config import Config
from metamusic.song.align import Alignment
from metamusic.song.lyrics import LyricLine, read_lyrics

LINES = (LyricLine(0.5, "a red sun"), LyricLine(2.0, "a blue sea"))


@pytest.fixture
def calls(monkeypatch):
    made = []

    def transcribe(song, model, **options):
        made.append(("transcribe", options["language"]))
        return LINES

    def align(song, lyrics, model, **options):
        made.append(("align", options["language"]))
        return Alignment(lines=LINES, unplaced=())

    monkeypatch.setattr(lyricsync, "transcribe", transcribe)
    monkeypatch.setattr(lyricsync, "align", align)
    return made


@pytest.fixture
def inputs(tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF not really a song, only its bytes are hashed here")
    model = tmp_path / "whisper.pt"
    model.write_bytes(b"\x80weights")
    text = tmp_path / "lyrics.txt"
    text.write_text("a red sun\na blue sea\n", encoding="utf-8")
    return song, model, text


def _config(song, model, *, text=None, language="en") -> Config:
    config = Config()
    config.music.audio, config.music.whisper_model, config.music.whisper_language = str(song), str(model), language
    if text is None:
        config.music.transcribe = True
    else:
        config.music.align, config.music.lyrics = True, str(text)
    return config


def test_a_resume_reuses_the_timed_lyrics_of_the_first_run(calls, inputs, tmp_path):
    song, model, _ = inputs
    run = tmp_path / "video.run"
    first = _config(song, model)
    path = lyricsync.timed_lyrics_for(first, run)
    assert calls == [("transcribe", "en")]
    key = json.loads((run / lyricsync.TIMED_KEY).read_text(encoding="utf-8"))
    assert key["mode"] == "transcribe" and key["lines"] == 2 and key["language"] == "en"
    again = _config(song, model)
    assert lyricsync.timed_lyrics_for(again, run) == path
    assert calls == [("transcribe", "en")]  # not recognised a second time
    assert again.music.lyrics == str(path)
    assert [ln.text for ln in read_lyrics(path).lines] == ["a red sun", "a blue sea"]


@pytest.mark.parametrize("change", ["language", "song", "model", "text", "key lost"])
def test_changed_inputs_are_recognised_again(calls, inputs, tmp_path, change):
    song, model, text = inputs
    run = tmp_path / "video.run"
    lyricsync.timed_lyrics_for(_config(song, model, text=text), run)
    language = "fr" if change == "language" else "en"
    if change == "song":
        song.write_bytes(song.read_bytes() + b"!")
    elif change == "model":
        model.write_bytes(b"\x80other weights")
    elif change == "text":
        text.write_text("a red sun\na green hill\n", encoding="utf-8")
    else:
        (run / lyricsync.TIMED_KEY).unlink()
    lyricsync.timed_lyrics_for(_config(song, model, text=text, language=language), run)
    assert calls == [("align", "en"), ("align", language)]


def test_a_reused_empty_transcription_still_renders_without_lyrics(monkeypatch, inputs, tmp_path):
    song, model, _ = inputs
    made = []
    monkeypatch.setattr(lyricsync, "transcribe", lambda *a, **k: made.append(1) or ())
    run = tmp_path / "video.run"
    for _ in range(2):
        config = _config(song, model)
        assert lyricsync.timed_lyrics_for(config, run) is None
        assert config.music.lyrics is None
    assert made == [1]
