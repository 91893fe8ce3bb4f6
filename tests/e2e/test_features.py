"""Captions, preview, storyboard sheets, theme prompts and keyframe mode through generate.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    FPS,
    LYRICS,
    SONG_SECONDS,
    assert_song_length,
    model_flags,
    run_main,
)

ROOT = Path(__file__).resolve().parents[2]


def flags(size=("64", "48")) -> list[str]:
    return ["-gid", "cpu", "-s", *size, "--fps", str(FPS), "-ips", "4", "-cuts", "4", "-sd", "7",
            "--precision", "fp32"]


@pytest.fixture(scope="module")
def captioned(tiny_models, song_wav, tmp_path_factory):
    """One render with burned and soft captions: (output, lyrics path)."""
    d = tmp_path_factory.mktemp("captions")
    lyrics = d / "lyrics.csv"
    lyrics.write_text(LYRICS, encoding="utf-8")
    out = d / "v.mp4"
    proc = run_main("generate.py", ["-ap", str(song_wav), "-lyr", str(lyrics), *model_flags(tiny_models),
                                    *flags(), "--captions", "both", "-o", str(out)], d)
    assert proc.returncode == 0, proc.stderr
    return out, lyrics


def test_burned_captions_change_only_the_caption_area_while_a_lyric_is_active(captioned):
    from metamusic.media.video import read_frames
    from metamusic.song.lyrics import read_lyrics

    out, lyrics_path = captioned
    assert_song_length(out, SONG_SECONDS)
    plain = []  # the same frames without captions: the run folder's segment videos
    for seg in sorted((out.with_name("v.run") / "segments").glob("segment_*.mp4")):
        plain.extend(read_frames(seg))
    final = list(read_frames(out))
    assert len(plain) == len(final) == round(SONG_SECONDS * FPS)
    first_lyric = read_lyrics(lyrics_path).lines[0].start
    h = final[0].shape[0]
    for k, (a, b) in enumerate(zip(plain, final)):
        diff = np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 96  # caption strokes, not x264 noise
        rows = np.nonzero(diff.any(axis=1))[0]
        if k / FPS < first_lyric:
            assert rows.size == 0, f"frame {k} changed before the first lyric"
        else:
            assert rows.size > 0, f"frame {k} has no caption"
            assert rows.min() >= h // 2, f"frame {k} changed outside the bottom caption band"


def test_soft_captions_srt_parses_back_and_mp4_has_a_subtitle_stream(captioned):
    from metamusic.media.captions import parse_srt
    from metamusic.media.video import probe
    from metamusic.song.lyrics import read_lyrics

    out, lyrics_path = captioned
    cues = parse_srt(out.with_suffix(".srt").read_text(encoding="utf-8"))
    lines = read_lyrics(lyrics_path).lines
    assert [c[2] for c in cues] == [line.text for line in lines]
    assert [round(c[0], 3) for c in cues] == [line.start for line in lines]
    assert cues[-1][1] == pytest.approx(SONG_SECONDS, abs=1e-3)
    assert probe(out).has_subtitles
    vtt = out.with_suffix(".vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT") and vtt.count(" --> ") == len(cues)


def test_soft_track_is_not_default_when_captions_are_also_burned(captioned):
    from metamusic.media.video import ffmpeg_exe

    out, _ = captioned
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    line = next(ln for ln in info.splitlines() if "Subtitle:" in ln)
    assert "(default)" not in line  # burned in already: players must not draw them twice


def test_storyboard_sheet_has_one_panel_per_segment_and_timeline_exists(captioned):
    from PIL import Image

    from metamusic.render.finish import write_contact_sheet
    from metamusic.render.plan import Plan
    from metamusic.runfolder import RunFolder

    out, _ = captioned
    run = RunFolder(out.with_name("v.run"))
    for name in ("storyboard_001.png", "timeline.png"):
        with Image.open(run.root / name) as img:
            assert img.size[0] > 200 and len(np.unique(np.asarray(img.convert("L")))) > 10
    segments = tuple(run.read_storyboard())
    plan = Plan(segments, (), 10.0, 6.0, (32, 32), keyframes=False, seed=0)
    assert write_contact_sheet(run, plan, upto=len(segments) - 1) == len(segments)


def test_preview_renders_the_whole_song_fast(tiny_models, tmp_path):
    from metamusic.runfolder import RunFolder
    from metamusic.song.audio import synth_song, write_wav

    song = write_wav(tmp_path / "ten.wav", synth_song(10.0, 16000, seed=4), 16000)
    out = tmp_path / "v.mp4"
    proc = run_main("generate.py", ["-ap", str(song), *model_flags(tiny_models), *flags(("64", "64")),
                                    "-ips", "50", "--preview", "--preview_steps", "2", "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    preview = tmp_path / "v.preview.mp4"
    assert preview.exists() and not out.exists()
    assert_song_length(preview, 10.0)
    segments = RunFolder(tmp_path / "v.preview.run").read_storyboard()
    assert all(s.steps <= 2 for s in segments)


def test_theme_and_prefix_compose_the_lyric_prompt():
    from metamusic.render import compose_prompt

    assert compose_prompt("the deep blue ocean", "a scene of", "oil painting, by Monet") == \
        "a scene of the deep blue ocean, oil painting, by Monet"
    assert compose_prompt(" rain. ", None, None) == "rain."


def test_keyframe_mode_frame_count_and_step_count(tiny_models, song_wav, tmp_path):
    from metamusic.runfolder import RunFolder

    lyrics = tmp_path / "lyrics.csv"
    lyrics.write_text(LYRICS, encoding="utf-8")
    out = tmp_path / "v.mp4"
    proc = run_main("generate.py", ["-ap", str(song_wav), "-lyr", str(lyrics), *model_flags(tiny_models),
                                    *flags(("32", "32")), "--keyframes", "--keyframe_steps", "2", "-o", str(out)],
                    tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_song_length(out, SONG_SECONDS)
    run = RunFolder(tmp_path / "v.run")
    k = len(run.read_storyboard())
    info = json.loads(run.info_path.read_text())
    assert info["totals"]["steps"] == info["this_run"]["steps_run"] == 2 * k  # every keyframe ran 2 steps
    assert sum(1 for t in info["tasks"] if t.startswith("keyframes_")) == k
    assert info["totals"]["frames"] == round(SONG_SECONDS * FPS)

    # Re-running the finished render just to burn captions optimises nothing.
    again = run_main("generate.py", ["-ap", str(song_wav), "-lyr", str(lyrics), *model_flags(tiny_models),
                                     *flags(("32", "32")), "--keyframes", "--keyframe_steps", "2", "-o", str(out),
                                     "--captions", "burn"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 steps run" in again.stderr
    after = json.loads(run.info_path.read_text())
    assert after["this_run"]["tasks_run"] == 0 and after["this_run"]["steps_run"] == 0
    assert after["totals"] == info["totals"]
