"""Timed lyric writers: what they write is read back by MetaMusic's own parser, times and text intact."""

from __future__ import annotations

import pytest

from metamusic.errors import InputError
from metamusic.song.lyric_writers import format_m2v_csv, write_timed_lyrics
from metamusic.song.lyrics import LyricLine, read_lyrics

LINES = (
    LyricLine(0.0, "Rain, on the window", 2.5, 1),
    LyricLine(3.27, 'She said "hello" – naïve café', 5.0, 2),
    LyricLine(63.5, "雨の歌", 65.125, 3),
)


@pytest.mark.parametrize("suffix, fmt", [(".lrc", "lrc"), (".srt", "srt"), (".csv", "m2v-csv")])
def test_written_files_parse_back_with_text_verbatim(tmp_path, suffix, fmt):
    path = write_timed_lyrics(tmp_path / f"out{suffix}", LINES)
    lyrics = read_lyrics(path)
    assert lyrics.format == fmt
    assert [ln.text for ln in lyrics.lines] == [ln.text for ln in LINES]
    got = [ln.start for ln in lyrics.lines]
    if fmt == "m2v-csv":  # whole seconds
        assert got == [0.0, 3.0, 63.0]
    else:
        assert got == pytest.approx([0.0, 3.27, 63.5])
    if fmt == "srt":
        assert [ln.end for ln in lyrics.lines] == pytest.approx([2.5, 5.0, 65.125])


def test_m2v_csv_has_the_music2video_header_and_mm_ss_times():
    text = format_m2v_csv(LINES)
    rows = text.splitlines()
    assert rows[0] == "timestamp,text"
    assert rows[1] == '00:00,"Rain, on the window"'
    assert rows[3] == "01:03,雨の歌"


def test_m2v_csv_moves_lines_that_share_a_second_to_the_next_free_one(tmp_path):
    lines = (LyricLine(4.1, "a"), LyricLine(4.6, "b"), LyricLine(4.9, "c"), LyricLine(9.0, "d"))
    path = write_timed_lyrics(tmp_path / "x.csv", lines)
    assert [ln.start for ln in read_lyrics(path).lines] == [4.0, 5.0, 6.0, 9.0]


def test_srt_line_without_end_lasts_until_the_next(tmp_path):
    lines = (LyricLine(1.0, "a"), LyricLine(4.0, "b"))
    path = write_timed_lyrics(tmp_path / "x.srt", lines)
    assert [ln.end for ln in read_lyrics(path).lines] == [4.0, 6.0]


@pytest.mark.parametrize("suffix, expected", [(".lrc", "[re:MetaMusic lyricsync]\n"), (".srt", ""),
                                              (".csv", "timestamp,text\n")])
def test_an_empty_timeline_still_writes_a_well_formed_file(tmp_path, suffix, expected):
    path = write_timed_lyrics(tmp_path / f"empty{suffix}", ())
    assert path.read_text(encoding="utf-8") == expected


def test_unknown_suffix_is_a_one_line_input_error(tmp_path):
    with pytest.raises(InputError, match=r"out\.txt: unknown lyric file type '\.txt'; use one of \.lrc, \.srt, \.csv"):
        write_timed_lyrics(tmp_path / "out.txt", LINES)
    assert not (tmp_path / "out.txt").exists()
