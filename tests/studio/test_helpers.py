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
