"""generate_interpolate.py end to end: 1 + 2 x lyrics segments, each as long as its audio."""

from __future__ import annotations

from helpers import (
    FPS,
    LYRICS,
    SONG_SECONDS,
    assert_song_length,
    model_flags,
    run_main,
    run_script,
)


def test_interpolate_segments_match_their_audio_and_the_song(tiny_models, song_wav, tmp_path):
    from metamusic.media.video import probe
    from metamusic.runfolder import RunFolder
    from metamusic.song.lyrics import read_lyrics

    lyrics = tmp_path / "lyrics.csv"
    lyrics.write_text(LYRICS, encoding="utf-8")
    out = tmp_path / "v.mp4"
    proc = run_main("generate_interpolate.py",
                    ["-vid", "-ap", str(song_wav), "-lyr", str(lyrics), *model_flags(tiny_models), "-gid", "cpu",
                     "-s", "32", "32", "--fps", str(FPS), "-ips", "6", "-cuts", "4", "-sd", "2",
                     "--precision", "fp32", "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = RunFolder(tmp_path / "v.run")
    segments = run.read_storyboard()
    n_lyrics = len(read_lyrics(lyrics).lines)
    assert len(segments) == 1 + 2 * n_lyrics
    assert [s.kind for s in segments] == ["audio"] + ["text", "audio"] * n_lyrics
    for seg in segments:
        info = probe(run.segment_video(seg.index))
        assert abs(info.video_frames / FPS - seg.duration) <= 1.0 / FPS, (seg, info)
    assert_song_length(out, SONG_SECONDS)


def test_interpolate_without_lyrics_uses_fixed_windows(tiny_models, song_wav, tmp_path):
    from metamusic.runfolder import RunFolder

    out = tmp_path / "v.mp4"
    proc = run_script("generate_interpolate.py",  # the real script, in its own process
                      ["-ap", str(song_wav), *model_flags(tiny_models), "-gid", "cpu", "-s", "32", "32",
                       "--fps", str(FPS), "-ips", "2", "-cuts", "2", "-vl", "2.5", "--precision", "fp32",
                       "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    segments = RunFolder(tmp_path / "v.run").read_storyboard()
    assert [(s.start, s.end) for s in segments] == [(0.0, 2.5), (2.5, 5.0), (5.0, SONG_SECONDS)]
    assert all(s.kind == "audio" for s in segments)
    assert_song_length(out, SONG_SECONDS)
