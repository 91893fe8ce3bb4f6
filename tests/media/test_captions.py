"""Burned captions, glyph coverage, SRT round trip, caption intervals and soft subtitles."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFont

from metamusic.errors import InputError
from metamusic.media.captions import (
    CaptionStyle,
    add_soft_subtitles,
    caption_intervals,
    caption_text_at,
    check_font_covers,
    check_lyrics_font,
    default_font_path,
    missing_glyphs,
    parse_srt,
    render_caption,
    wrap_caption,
    write_srt,
    write_vtt,
)
from metamusic.song.lyrics import parse_lyrics

H, W = 96, 128


def _frame(seed: int = 0) -> np.ndarray:
    """A noisy frame: any drawn pixel differs from it."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 216, size=(H, W, 3), dtype=np.uint8)


def _changed_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) inclusive bounding box of pixels that differ, or None."""
    ys, xs = np.nonzero(np.any(a != b, axis=2))
    if ys.size == 0:
        return None
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


# ---------------------------------------------------------------------------------- burned


def test_bottom_caption_changes_only_the_bottom_band():
    frame = _frame()
    before = frame.copy()
    out = render_caption(frame, "blue ocean", CaptionStyle(size_frac=0.1))
    assert out is not frame and out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(frame, before)  # input untouched
    box = _changed_box(frame, out)
    assert box is not None
    y0, y1, x0, x1 = box
    assert y0 >= H // 2 and y1 <= H - 1 - int(0.05 * H) + 1  # inside the bottom band, above the margin
    assert x0 > 0 and x1 < W - 1  # centred, not touching the sides
    # The text is white with a black outline: both colours appear in the caption area.
    area = out[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)
    assert (area == 255).all(axis=1).any() and (area == 0).all(axis=1).any()


def test_top_and_center_positions():
    frame = _frame(1)
    y0, y1, _, _ = _changed_box(frame, render_caption(frame, "hello", CaptionStyle(position="top")))
    assert y1 < H // 2 and y0 >= int(0.05 * H) - 1
    c0, c1, _, _ = _changed_box(frame, render_caption(frame, "hello", CaptionStyle(position="center")))
    assert c0 < H // 2 < c1


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_changes_nothing(text):
    frame = _frame(2)
    out = render_caption(frame, text)
    assert np.array_equal(out, frame) and out is not frame


def test_long_text_wraps_to_more_lines():
    frame = _frame(3)
    style = CaptionStyle(size_frac=0.08)
    short = _changed_box(frame, render_caption(frame, "the sea", style))
    long = _changed_box(frame, render_caption(frame, "the blue ocean is singing under the silver moon", style))
    short_h, long_h = short[1] - short[0], long[1] - long[0]
    assert long_h > 1.8 * short_h  # at least two lines
    assert long[3] - long[2] <= 0.9 * W  # the wrapped lines respect max_width_frac


def test_wrap_caption_fits_width_and_keeps_words():
    font = ImageFont.truetype(str(default_font_path()), 12)
    text = "the blue ocean is singing under the silver moon"
    lines = wrap_caption(text, font, max_width=80, stroke_width=1)
    assert len(lines) >= 3
    assert all(font.getlength(ln) + 2 <= 80 for ln in lines)
    assert " ".join(lines) == text  # breaks only at spaces here


def test_wrap_caption_breaks_cjk_and_long_words_per_character():
    font = ImageFont.truetype(str(default_font_path()), 12)
    cjk = "青い海が月の下で歌っている夜の歌"
    lines = wrap_caption(cjk, font, max_width=60)
    assert len(lines) > 1 and "".join(lines) == cjk
    word = "supercalifragilisticexpialidocious"
    lines = wrap_caption(word, font, max_width=60)
    assert len(lines) > 1 and "".join(lines) == word
    assert all(font.getlength(ln) <= 60 for ln in lines)


def test_explicit_newlines_are_kept():
    font = ImageFont.truetype(str(default_font_path()), 12)
    assert wrap_caption("one\ntwo\n\nthree", font, max_width=500) == ["one", "two", "three"]


def test_caption_taller_than_frame_shrinks_font():
    frame = np.zeros((40, 200, 3), np.uint8)
    text = " ".join(["word"] * 60)
    out = render_caption(frame, text, CaptionStyle(size_frac=0.3))
    box = _changed_box(frame, out)
    assert box is not None and box[0] >= 0 and box[1] < 40


def test_bad_style_and_font_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="position"):
        CaptionStyle(position="left")
    with pytest.raises(InputError, match="size_frac"):
        CaptionStyle(size_frac=0)
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"not a font")
    with pytest.raises(InputError, match="broken.ttf"):
        render_caption(_frame(), "x", CaptionStyle(font=str(bad)))
    with pytest.raises(InputError, match="nofont.ttf"):
        check_font_covers("x", tmp_path / "nofont.ttf")


# ---------------------------------------------------------------------------------- glyphs


def test_cjk_with_dejavu_raises_naming_font_line_and_chars():
    with pytest.raises(InputError) as err:
        check_font_covers("hello 青い海", None, line=7)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(default_font_path()))
    assert "'青い海'" in msg and "lyric line 7" in msg and "--caption_font" in msg


def test_covered_scripts_pass():
    check_font_covers("Olá, Ωmega — привет! naïve café\t\u200b")  # Latin, Greek, Cyrillic, controls
    assert missing_glyphs("abc 中x文", None) == "中文"


def test_check_lyrics_font_names_the_file_line():
    lyrics = parse_lyrics("00:01 hello there\n00:03 blue ocean\n00:05 青い海\n", fmt="plain")
    with pytest.raises(InputError, match="lyric line 3"):
        check_lyrics_font(lyrics)


# ---------------------------------------------------------------------------------- SRT


def test_srt_round_trip(tmp_path):
    cues = [(0.0, 1.5, "first line"), (1.5, 3.25, "two\nrows"), (3661.007, 3662.5, "an hour in, ünïcode 青")]
    path = tmp_path / "sub" / "captions.srt"
    write_srt(cues, path)
    text = path.read_text("utf-8")
    assert text.startswith("1\n00:00:00,000 --> 00:00:01,500\nfirst line\n")
    assert "01:01:01,007 --> 01:01:02,500" in text
    back = parse_srt(text)
    assert [(a, b, t) for a, b, t in back] == [(pytest.approx(a, abs=5e-4), pytest.approx(b, abs=5e-4), t) for a, b, t in cues]
    assert not list(path.parent.glob(".*partial*"))  # no temporary left behind


def test_srt_readable_by_lyrics_parser(tmp_path):
    path = tmp_path / "c.srt"
    write_srt([(0.5, 1.0, "hello"), (2.0, 3.0, "world")], path)
    lyr = parse_lyrics(path.read_text("utf-8"), fmt="srt")
    assert [(ln.start, ln.end, ln.text) for ln in lyr.lines] == [(0.5, 1.0, "hello"), (2.0, 3.0, "world")]


def test_write_srt_rejects_bad_times(tmp_path):
    with pytest.raises(ValueError):
        write_srt([(2.0, 1.0, "backwards")], tmp_path / "x.srt")
    assert not (tmp_path / "x.srt").exists()


def test_parse_srt_errors_name_the_line():
    with pytest.raises(InputError, match=r"^subs.srt:5: "):
        parse_srt("1\n00:00:01,000 --> 00:00:02,000\nok\n\nnot a timing line\n", source="subs.srt")


def test_caption_intervals_from_lyrics():
    srt = "1\n00:00:01,000 --> 00:00:02,000\nA\n\n2\n00:00:04,000 --> 00:00:09,000\nB\n\n3\n00:00:06,000 --> 00:00:07,000\nC\n"
    lyr = parse_lyrics(srt, fmt="srt")
    # B's own end (9 s) runs past C's start: clipped to 6 s; C is the last: its own end 7 s.
    assert caption_intervals(lyr, 10.0) == [(1.0, 2.0, "A"), (4.0, 6.0, "B"), (6.0, 7.0, "C")]
    plain = parse_lyrics("00:01 one\n00:03 two\n00:12 late\n", fmt="plain")
    # No end times: each lasts to the next start, the last to the song's end; lines past the end drop.
    assert caption_intervals(plain, 8.0) == [(1.0, 3.0, "one"), (3.0, 8.0, "two")]
    iv = caption_intervals(lyr, 10.0)
    assert caption_text_at(iv, 0.5) == "" and caption_text_at(iv, 1.0) == "A"
    assert caption_text_at(iv, 3.0) == "" and caption_text_at(iv, 6.5) == "C" and caption_text_at(iv, 7.0) == ""


# ---------------------------------------------------------------------------------- soft subs


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg_info(path: Path) -> str:
    proc = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return proc.stderr


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "tiny.mp4"
    cmd = [
        _ffmpeg(), "-hide_banner", "-nostdin", "-y",
        "-f", "lavfi", "-i", "color=c=blue:s=64x48:r=10:d=1",
        "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
        "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def test_add_soft_subtitles_adds_mov_text_stream(tiny_mp4, tmp_path):
    srt = tmp_path / "c.srt"
    write_srt([(0.0, 0.5, "hello"), (0.5, 1.0, "world")], srt)
    out = tmp_path / "out.mp4"
    add_soft_subtitles(tiny_mp4, srt, out, language="fra")
    info = _ffmpeg_info(out)
    assert "Subtitle: mov_text" in info
    assert "(fra)" in info
    assert "Video: h264" in info and "Audio: aac" in info  # streams copied
    assert not list(tmp_path.glob(".*partial*"))
    # Reading the subtitles back out of the mp4 gives the cues.
    back = subprocess.run([_ffmpeg(), "-v", "error", "-i", str(out), "-map", "0:s", "-f", "srt", "-"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert [t for _, _, t in parse_srt(back)] == ["hello", "world"]


def test_add_soft_subtitles_rejects_bad_input(tiny_mp4, tmp_path):
    srt = tmp_path / "c.srt"
    write_srt([(0.0, 0.5, "hello")], srt)
    with pytest.raises(InputError, match="missing.srt"):
        add_soft_subtitles(tiny_mp4, tmp_path / "missing.srt", tmp_path / "o.mp4")
    with pytest.raises(InputError, match="mov_text"):
        add_soft_subtitles(tiny_mp4, srt, tmp_path / "o.mkv")
    with pytest.raises(InputError, match="language"):
        add_soft_subtitles(tiny_mp4, srt, tmp_path / "o.mp4", language="english")


def test_vtt_has_header_dot_times_and_escaped_text(tmp_path):
    path = tmp_path / "c.vtt"
    write_vtt([(0.0, 1.5, "rock & roll"), (1.5, 2.0, "  "), (61.25, 3723.5, "a <b> c\nsecond line")], path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\n\n")
    blocks = text.split("\n\n")
    assert blocks[1] == "00:00:00.000 --> 00:00:01.500\nrock &amp; roll"
    assert blocks[2] == "00:01:01.250 --> 01:02:03.500\na &lt;b&gt; c\nsecond line\n"
    assert len(blocks) == 3  # the empty cue is skipped
    with pytest.raises(ValueError):
        write_vtt([(2.0, 1.0, "backwards")], tmp_path / "bad.vtt")
    assert not (tmp_path / "bad.vtt").exists()


def _subtitle_stream_line(video) -> str:
    return next(ln for ln in _ffmpeg_info(video).splitlines() if "Subtitle:" in ln)


def test_soft_subtitles_are_default_unless_captions_are_burned_too(tiny_mp4, tmp_path):
    srt = tmp_path / "c.srt"
    write_srt([(0.0, 0.5, "hello")], srt)
    add_soft_subtitles(tiny_mp4, srt, tmp_path / "shown.mp4")
    add_soft_subtitles(tiny_mp4, srt, tmp_path / "burned.mp4", default=False)
    assert "(default)" in _subtitle_stream_line(tmp_path / "shown.mp4")
    assert "(default)" not in _subtitle_stream_line(tmp_path / "burned.mp4")
    info = _ffmpeg_info(tmp_path / "burned.mp4")
    assert all("(default)" in ln for ln in info.splitlines() if "Video:" in ln or "Audio:" in ln)
    back = subprocess.run([_ffmpeg(), "-v", "error", "-i", str(tmp_path / "burned.mp4"), "-map", "0:s", "-f", "srt",
                           "-"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert [t for _, _, t in parse_srt(back)] == ["hello"]  # still there, just not shown by default
