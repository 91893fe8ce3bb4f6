"""The studio's pure helpers: captions for the page's <video>, safe upload names, workdir paths, edits."""

from __future__ import annotations

import pytest

from metamusic.errors import InputError
from metamusic.song.timeline import Segment
from metamusic.studio import (
    apply_rows,
    first_edited,
    inside,
    safe_name,
    srt_to_vtt,
    storyboard_rows,
)


def test_srt_to_vtt():
    srt = "1\n00:00:00,500 --> 00:00:02,000\na red sun\n\n2\n00:00:02,000 --> 00:00:03,250\nline one\nline two\n"
    assert srt_to_vtt(srt) == ("WEBVTT\n\n00:00:00.500 --> 00:00:02.000\na red sun\n\n"
                               "00:00:02.000 --> 00:00:03.250\nline one\nline two\n")
    assert srt_to_vtt("") == "WEBVTT\n\n"


def test_safe_name():
    assert safe_name("../../etc/My Song (live).MP3", (".mp3",), "song") == "My_Song_live.mp3"
    assert safe_name("..wav", (".wav",), "song") == "song.wav"
    with pytest.raises(InputError, match="evil.sh: not a song file"):
        safe_name("evil.sh", (".wav",), "song")


def test_inside(tmp_path):
    assert inside(tmp_path, tmp_path / "a" / "b.mp4") == (tmp_path / "a" / "b.mp4").resolve()
    for bad in (tmp_path / ".." / "x", "/etc/passwd"):
        with pytest.raises(InputError, match="outside the studio's workdir"):
            inside(tmp_path, bad)


def _segments():
    return [Segment(i, i * 1.0, i + 1.0, 3, "text", f"line {i}", i, 1.0, 0.0, i * 1.0, i + 1.0) for i in range(3)]


def test_table_edits_and_first_edited():
    segments = _segments()
    rows = storyboard_rows(segments)
    assert first_edited(segments, apply_rows(segments, rows)) is None
    rows[1][4] = "a castle"
    rows[2][3] = "fused"
    edited = apply_rows(segments, rows)
    assert edited[1].text == "a castle" and edited[1].start == 1.0 and edited[2].kind == "fused"
    assert first_edited(segments, edited) == 1
    rows[0][3] = "video"
    with pytest.raises(InputError, match="segment 0 has kind 'video'"):
        apply_rows(segments, rows)
    with pytest.raises(InputError, match="2 rows"):
        apply_rows(segments, rows[:2])


def test_uploads_are_checked_before_anything_is_written(tmp_path):
    from metamusic.studio import app

    workdir = tmp_path / "runs"
    workdir.mkdir()
    studio = app.Studio(workdir)
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * 16)
    lyrics = tmp_path / "words.lrc"
    lyrics.write_text("[00:00.50]hello\n")
    old = app.MAX_SONG_BYTES
    app.MAX_SONG_BYTES = 8
    try:
        with pytest.raises(InputError, match="big.wav: the song is 0.0 MB"):
            studio.new_project(str(big), str(lyrics))
    finally:
        app.MAX_SONG_BYTES = old
    assert list(workdir.iterdir()) == []
    project = studio.new_project(str(big), str(lyrics))
    assert sorted(p.name for p in (project / "uploads").iterdir()) == ["big.wav", "words.lrc"]
    with pytest.raises(InputError, match="outside the studio's workdir"):
        studio.project("../elsewhere")


def test_last_error_and_captions(tmp_path):
    from metamusic.studio.app import captions_vtt, last_error

    log = tmp_path / "render.log"
    log.write_text("loading models\nerror: song.wav: cannot decode the audio\n")
    assert last_error(log) == "error: song.wav: cannot decode the audio"
    video = tmp_path / "video.mp4"
    assert captions_vtt(video) is None
    video.with_suffix(".srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhi\n")
    assert captions_vtt(video).read_text() == "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhi\n"
