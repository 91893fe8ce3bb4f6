"""Lyric parsing: every format on the shipped examples, edge cases, errors, and fuzzing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metamusic.errors import InputError
from metamusic.song.lyrics import (
    FORMATS,
    LyricLine,
    Lyrics,
    active_line_at,
    clip_to_duration,
    detect_format,
    parse_lyrics,
    parse_time,
    read_lyrics,
)

LYRICS_DIR = Path(__file__).resolve().parents[2] / "lyrics"

# The shipped example song: the same seven sung lines in every format but M2V.
SONG = [
    (0.5, "Fold the morning into a paper boat"),
    (1.5, "Send it sailing where the gutters go"),
    (2.75, "Past the bakery, past the sleeping bus"),
    (4.0, "Rain keeps the rhythm just for us"),
    (5.0, "Every puddle holds a little sky"),
    (6.0, "Rain keeps the rhythm just for us"),
    (7.0, "Wave the paper boat goodbye"),
]


def timeline(lyrics: Lyrics) -> list[tuple[float, str]]:
    return [(ln.start, ln.text) for ln in lyrics.lines]


# --------------------------------------------------------------------------- example files


@pytest.mark.parametrize(
    "name, fmt",
    [("example.txt", "plain"), ("example_screenplay.csv", "screenplay-csv"),
     ("example.lrc", "lrc"), ("example.srt", "srt")],
)
def test_examples_give_the_same_song(name, fmt):
    lyrics = read_lyrics(LYRICS_DIR / name)
    assert lyrics.format == fmt
    assert lyrics.path == LYRICS_DIR / name
    assert timeline(lyrics) == SONG


def test_example_m2v_csv_has_scene_line_and_whole_seconds():
    lyrics = read_lyrics(LYRICS_DIR / "example.csv")
    assert lyrics.format == "m2v-csv"
    assert lyrics.lines[0].start == 0.0 and "paper boat" in lyrics.lines[0].text
    assert [ln.start for ln in lyrics.lines] == [float(i) for i in range(8)]
    assert lyrics.lines[3].text == "Past the bakery, past the sleeping bus"  # quoted comma
    assert lyrics.lines[1].line == 3  # header is line 1, scene line 2


def test_example_lrc_multi_stamp_offset_and_line_numbers():
    lyrics = read_lyrics(LYRICS_DIR / "example.lrc")
    chorus = [ln for ln in lyrics.lines if ln.text.startswith("Rain")]
    assert [ln.start for ln in chorus] == [4.0, 6.0]  # [00:04.25][00:06.25] with [offset:+250]
    assert chorus[0].line == chorus[1].line  # both from the same source line
    assert lyrics.lines[1].text == "Send it sailing where the gutters go"  # <mm:ss.xx> removed


def test_example_srt_end_times_and_joined_text():
    lyrics = read_lyrics(LYRICS_DIR / "example.srt")
    assert [ln.end for ln in lyrics.lines] == [1.5, 2.75, 4.0, 5.0, 6.0, 7.0, 7.9]
    assert lyrics.lines[0].text == "Fold the morning into a paper boat"  # two text lines joined
    assert "<i>" not in lyrics.lines[3].text


def test_examples_fit_the_eight_second_example_song():
    for path in LYRICS_DIR.glob("example*"):
        lyrics = read_lyrics(path)
        assert all(ln.start < 8.0 for ln in lyrics.lines), path


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_override_matches_detection(fmt):
    name = {"m2v-csv": "example.csv", "plain": "example.txt", "screenplay-csv": "example_screenplay.csv",
            "lrc": "example.lrc", "srt": "example.srt"}[fmt]
    text = (LYRICS_DIR / name).read_text(encoding="utf-8")
    assert detect_format(text) == fmt
    assert parse_lyrics(text, fmt=fmt).lines == parse_lyrics(text).lines


# --------------------------------------------------------------------------- time values


@pytest.mark.parametrize(
    "stamp, seconds",
    [("12.5", 12.5), ("7", 7.0), ("01:05", 65.0), ("1:05.25", 65.25), ("00:00.5", 0.5),
     ("01:02:03", 3723.0), ("1:02:03.5", 3723.5), ("75:00", 4500.0)],
)
def test_parse_time_forms(stamp, seconds):
    assert parse_time(stamp) == pytest.approx(seconds)


@pytest.mark.parametrize("stamp", ["-1", "-00:05", "01:60", "1:60:00", "nan", "1e3", "١٢", "1:2:3:4", "", "."])
def test_parse_time_rejects(stamp):
    with pytest.raises(ValueError):
        parse_time(stamp)


# --------------------------------------------------------------------------- edge cases per format


def test_m2v_header_variations_decimals_hhmmss_and_extra_columns():
    text = " Timestamp , TEXT ,notes\n00:01.50,first,ignored\n0:00:02,second,x\n3.25,third\n"
    lyrics = parse_lyrics(text)
    assert lyrics.format == "m2v-csv"
    assert timeline(lyrics) == [(1.5, "first"), (2.0, "second"), (3.25, "third")]


def test_m2v_two_column_header_keeps_unquoted_commas():
    lyrics = parse_lyrics('timestamp,text\n00:01,"quoted, comma"\n00:02,bare, comma, kept\n')
    assert timeline(lyrics) == [(1.0, "quoted, comma"), (2.0, "bare, comma, kept")]


def test_plain_forms():
    lyrics = parse_lyrics("00:01 one\n00:02.5\ttwo words\n1:00:03 three\n")
    assert lyrics.format == "plain"
    assert timeline(lyrics) == [(1.0, "one"), (2.5, "two words"), (3603.0, "three")]


def test_screenplay_csv():
    lyrics = parse_lyrics('"hello, there",0.5\n"a ""quoted"" word",1.25\n')
    assert lyrics.format == "screenplay-csv"
    assert timeline(lyrics) == [(0.5, "hello, there"), (1.25, 'a "quoted" word')]


def test_lrc_stamp_precisions_tags_and_multi_stamps_sorted():
    text = (
        "[ti:Song]\n[ar:Someone]\n[al:Album]\n[by:me]\n[length:03:00]\n[re:editor]\n[ve:1.0]\n"
        "[00:10.5]ten and a half\n[00:01.234][00:20]one and twenty\n[00:05]five\n"
    )
    lyrics = parse_lyrics(text)
    assert lyrics.format == "lrc"
    assert timeline(lyrics) == [(1.234, "one and twenty"), (5.0, "five"), (10.5, "ten and a half"),
                                (20.0, "one and twenty")]
    assert [ln.line for ln in lyrics.lines] == [9, 10, 8, 9]


@pytest.mark.parametrize("offset, first", [("+500", 0.5), ("-500", 1.5), ("0", 1.0)])
def test_lrc_offset_positive_means_earlier(offset, first):
    lyrics = parse_lyrics(f"[offset:{offset}]\n[00:01.00]a\n[00:02.00]b\n")
    assert lyrics.lines[0].start == pytest.approx(first)


def test_lrc_offset_before_zero_is_an_error():
    with pytest.raises(InputError, match=r"^<string>:2: .*offset.*before the song's start"):
        parse_lyrics("[offset:+2000]\n[00:01.00]a\n")


def test_lrc_enhanced_word_stamps_removed():
    lyrics = parse_lyrics("[00:01.00]<00:01.00>Hello <00:01.50>bright <00:02.00>world\n")
    assert lyrics.lines[0].text == "Hello bright world"


def test_srt_with_crlf_and_dot_milliseconds():
    text = "1\r\n00:00:01.000 --> 00:00:02.500\r\nline one\r\n\r\n2\r\n00:00:03,000 --> 00:00:04,000 X1:0\r\nline two\r\n"
    lyrics = parse_lyrics(text)
    assert lyrics.format == "srt"
    assert [(ln.start, ln.end, ln.text) for ln in lyrics.lines] == [(1.0, 2.5, "line one"), (3.0, 4.0, "line two")]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_ends_and_numbers(newline):
    text = newline.join(["timestamp,text", "00:01,a", "", "00:02,b"]) + newline
    lyrics = parse_lyrics(text)
    assert timeline(lyrics) == [(1.0, "a"), (2.0, "b")]
    assert [ln.line for ln in lyrics.lines] == [2, 4]


def test_utf8_bom_file(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftimestamp,text\r\n00:01,caf\xc3\xa9\r\n")
    lyrics = read_lyrics(path)
    assert lyrics.format == "m2v-csv" and timeline(lyrics) == [(1.0, "café")]


def test_utf16_with_bom_file(tmp_path):
    path = tmp_path / "u16.lrc"
    path.write_bytes("[00:01.00]月亮代表我的心\n".encode("utf-16"))
    assert timeline(read_lyrics(path)) == [(1.0, "月亮代表我的心")]


def test_chinese_text_all_formats():
    assert parse_lyrics("[00:01.00]你好，世界\n").lines[0].text == "你好，世界"
    assert parse_lyrics("00:01 你好，世界\n").lines[0].text == "你好，世界"
    assert parse_lyrics("timestamp,text\n00:01,你好 世界\n").lines[0].text == "你好 世界"
    assert parse_lyrics('"你好,世界",1.5\n').lines[0].text == "你好,世界"


def test_over_long_line_kept_intact():
    long_text = " ".join(f"word{i}" for i in range(2000))  # far beyond CLIP's 77 tokens
    lyrics = parse_lyrics(f"timestamp,text\n00:01,{long_text}\n")
    assert lyrics.lines[0].text == long_text


def test_empty_text_lines_dropped_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="metamusic.song.lyrics"):
        lyrics = parse_lyrics("[00:01.00]a\n[00:02.00]\n[00:03.00]  <00:03.50>  \n[00:04.00]d\n", source="x.lrc")
    assert timeline(lyrics) == [(1.0, "a"), (4.0, "d")]
    assert "x.lrc:2:" in caplog.text and "x.lrc:3:" in caplog.text


# --------------------------------------------------------------------------- errors


def test_not_utf8_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("00:01 café\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.txt: not UTF-8 text \(legacy encoding\?\); re-save it as UTF-8$"):
        read_lyrics(path)


@pytest.mark.parametrize("content", [b"", b"\n \n\t\n", b"\xef\xbb\xbf"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"empty\.csv: no lyric lines"):
        read_lyrics(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match=r"nope\.lrc: no such lyrics file"):
        read_lyrics(tmp_path / "nope.lrc")
    with pytest.raises(InputError, match="is a directory"):
        read_lyrics(tmp_path)


def test_unknown_format_message():
    with pytest.raises(InputError) as err:
        parse_lyrics("just some words\nwithout any times\n", source="song.txt")
    assert str(err.value) == (
        "song.txt: could not recognise the lyric format (expected M2V CSV `timestamp,text`, "
        "plain `MM:SS text`, screen-play CSV, LRC or SRT)"
    )


def test_decreasing_timestamp_message():
    with pytest.raises(InputError) as err:
        parse_lyrics("00:10 a\n01:10 b\n01:05 c\n", source="song.txt")
    assert str(err.value) == (
        "song.txt:3: timestamp 01:05 is earlier than the previous line's 01:10 (timestamps must increase)"
    )


@pytest.mark.parametrize(
    "text, line, other",
    [("timestamp,text\n00:01,a\n00:01,b\n", 3, 2), ("[00:01.00]a\n[00:02.00][00:01.00]b\n", 2, 1),
     ('"a",1\n"b",1.0\n', 2, 1)],
)
def test_duplicate_timestamps_name_both_lines(text, line, other):
    with pytest.raises(InputError, match=rf"^f\.x:{line}: .*duplicates line {other}'s"):
        parse_lyrics(text, source="f.x")


@pytest.mark.parametrize(
    "text, line, problem",
    [("timestamp,text\n00:01,a\nhello,b\n", 3, "not a time"),
     ("timestamp,text\n00:01,a\n-00:02,b\n", 3, "negative"),
     ("timestamp,text\n00:75,a\n", 2, "below 60"),
     ("timestamp,text\n00:01,\"unclosed\n", 2, "malformed CSV"),
     ("00:01 a\nno time here\n", 2, "expected `MM:SS text`"),
     ('"a",1\n"b"\n', 2, "screen-play"),
     ("[00:01.00]a\nplain words\n", 2, "LRC"),
     ("[offset:soon]\n[00:01.00]a\n", 1, "offset"),
     ("[00:01.00]a\n[00:61.00]b\n", 2, "below 60"),
     ("1\n00:00:01,000 --> 00:00:02,000\na\n\nnot a cue\n", 5, "SRT cue time"),
     ("1\n00:00:03,000 --> 00:00:02,000\na\n", 2, "ends before it starts")],
)
def test_line_errors_name_file_and_line(text, line, problem):
    with pytest.raises(InputError) as err:
        parse_lyrics(text, source="lyr.file")
    message = str(err.value)
    assert message.startswith(f"lyr.file:{line}: ") and problem in message
    assert "\n" not in message


def test_all_lines_empty_is_an_error():
    with pytest.raises(InputError, match="no usable lyric lines"):
        parse_lyrics("[00:01.00]\n[00:02.00]   \n")


def test_bad_format_name():
    with pytest.raises(InputError, match="unknown lyric format"):
        parse_lyrics("00:01 a", fmt="karaoke")


# --------------------------------------------------------------------------- timeline helpers


def test_clip_to_duration_drops_late_lines_and_clamps_ends(caplog):
    lyrics = Lyrics(
        lines=(LyricLine(1.0, "a", 2.0, 1), LyricLine(3.0, "b", 9.0, 2), LyricLine(5.0, "late", None, 3)),
        path=Path("x.srt"), format="srt",
    )
    with caplog.at_level(logging.WARNING, logger="metamusic.song.lyrics"):
        clipped = clip_to_duration(lyrics, 5.0)
    assert [(ln.start, ln.end, ln.text) for ln in clipped.lines] == [(1.0, 2.0, "a"), (3.0, 5.0, "b")]
    assert "x.srt:3:" in caplog.text and "'late'" in caplog.text
    assert clipped.path == lyrics.path and clipped.format == "srt"


def test_clip_to_duration_everything_late_is_an_error():
    lyrics = parse_lyrics("00:10 a\n00:12 b\n", source="late.txt")
    with pytest.raises(InputError, match=r"every lyric line starts after the song ends"):
        clip_to_duration(lyrics, 8.0)


def test_active_line_at():
    plain = parse_lyrics("00:01 a\n00:03 b\n")
    assert [active_line_at(plain, t) for t in (0.0, 0.99, 1.0, 2.9, 3.0, 100.0)] == [None, None, 0, 0, 1, 1]
    srt = read_lyrics(LYRICS_DIR / "example.srt")
    assert active_line_at(srt, 7.5) == 6 and active_line_at(srt, 7.95) is None  # past the last cue's end


# --------------------------------------------------------------------------- property tests

_PARSER_ALPHABET = st.sampled_from(list('[]:0123456789,.-> \n"\r<>') + ["ti", "offset", "\ufeff", "\t", "a", "字"])
_ANY_FMT = st.sampled_from([None, *FORMATS])


def _only_input_errors(text: str, fmt: str | None) -> None:
    try:
        lyrics = parse_lyrics(text, fmt=fmt)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    starts = [ln.start for ln in lyrics.lines]
    assert starts == sorted(starts) and len(set(starts)) == len(starts) and starts
    assert all(ln.text and ln.start >= 0 for ln in lyrics.lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(), _ANY_FMT)
def test_any_text_gives_lyrics_or_input_error(text, fmt):
    _only_input_errors(text, fmt)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PARSER_ALPHABET, max_size=80).map("".join), _ANY_FMT)
def test_parser_alphabet_gives_lyrics_or_input_error(text, fmt):
    _only_input_errors(text, fmt)


_STAMP = st.builds(lambda m, s, f: f"{m:02d}:{s:02d}.{f:02d}", st.integers(0, 99), st.integers(0, 70), st.integers(0, 99))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["[{}]", "{} ", "{},", '"x",{}', "<{}>"]), _STAMP, st.text(max_size=8)),
                max_size=6), st.sampled_from(["", "timestamp,text\n", "[offset:-120]\n"]))
def test_near_valid_lines_give_lyrics_or_input_error(rows, head):
    text = head + "\n".join(pattern.format(stamp) + words for pattern, stamp, words in rows)
    _only_input_errors(text, None)


def test_unreadable_file_is_an_input_error(tmp_path, monkeypatch):
    path = tmp_path / "locked.lrc"
    path.write_text("[00:01.00]a\n", encoding="utf-8")

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(InputError, match=r"locked\.lrc: cannot read the lyrics file \(permission denied\)"):
        read_lyrics(path)
