"""Video I/O: FrameWriter, probing, decoding, concatenation and muxing (tiny clips, bundled ffmpeg)."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from metamusic.errors import InputError, MetaMusicError
from metamusic.media import probe as media_probe
from metamusic.media import video

W, H, FPS = 64, 48, 10


def write_wav(path: Path, seconds: float, rate: int = 22050, tone_from: float = 0.0) -> Path:
    """A mono 16-bit wav: silence until ``tone_from`` seconds, then a 440 Hz tone."""
    t = np.arange(int(round(seconds * rate))) / rate
    signal = np.where(t >= tone_from, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes((signal * 32767).astype("<i2").tobytes())
    return path


def solid(value: int, size=(W, H)) -> np.ndarray:
    return np.full((size[1], size[0], 3), value, np.uint8)  # (H, W, 3)


def make_clip(path: Path, values, fps: float = FPS, size=(W, H)) -> Path:
    with video.FrameWriter(path, fps, size, preset="ultrafast") as writer:
        for v in values:
            writer.write(solid(v, size))
    return path


def decode_audio(path: Path, rate: int = 22050) -> np.ndarray:
    """All audio of ``path`` as mono float samples."""
    out = subprocess.run(
        [video.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
         "-ac", "1", "-ar", str(rate), "-f", "s16le", "pipe:1"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(out, dtype="<i2").astype(np.float32) / 32768


# ----------------------------------------------------------------------------------------------
# FrameWriter


def test_frame_writer_writes_n_frames_at_fps(tmp_path):
    path = tmp_path / "clip.mp4"
    n = 13
    with video.FrameWriter(path, FPS, (W, H), preset="ultrafast") as writer:
        for i in range(n):
            writer.write(solid(10 * i))
        assert not path.exists()  # only the hidden temporary file exists while writing
    assert path.exists() and not video.temp_path_for(path).exists()
    assert writer.frames_written == n and writer.wait_seconds >= 0.0
    info = video.probe(path)
    assert info.video_frames == n
    assert abs(info.duration - n / FPS) <= 1 / FPS
    assert (info.video_codec, info.pix_fmt, info.width, info.height, info.fps) == ("h264", "yuv420p", W, H, FPS)
    assert not info.has_audio and not info.has_subtitles
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_frame_writer_accepts_tensors_and_numpy(tmp_path):
    path = tmp_path / "mixed.mp4"
    with video.FrameWriter(path, FPS, (W, H), crf=0, preset="ultrafast") as writer:
        writer.write(torch.full((3, H, W), 0.2))  # (3, H, W)
        writer.write(torch.full((1, 3, H, W), 0.6, dtype=torch.float64))  # (1, 3, H, W)
        writer.write(solid(200))  # (H, W, 3) uint8
        writer.write(torch.full((3, H, W), 7.0))  # out of range: clamped to white
    means = [float(f.mean()) for f in video.read_frames(path)]
    assert len(means) == 4
    np.testing.assert_allclose(means, [51, 153, 200, 255], atol=3)
    frame = video.extract_frame(path, 1)
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    assert abs(float(frame.mean()) - 153) <= 3
    with pytest.raises(IndexError):
        video.extract_frame(path, 4)


def test_frame_writer_keeps_colour_channels_in_order(tmp_path):
    path = tmp_path / "red.mp4"
    red = torch.zeros(3, H, W)
    red[0] = 1.0
    with video.FrameWriter(path, FPS, (W, H), crf=0, preset="ultrafast") as writer:
        writer.write(red)
    r, g, b = video.extract_frame(path, 0).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_exception_in_block_leaves_no_file(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"previous complete file")
    with pytest.raises(RuntimeError, match="boom"):
        with video.FrameWriter(path, FPS, (W, H), preset="ultrafast") as writer:
            for i in range(3):
                writer.write(solid(i))
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous complete file"  # untouched: no half-written output
    assert not video.temp_path_for(path).exists()
    assert writer._proc.poll() is not None  # ffmpeg is gone

    fresh = tmp_path / "fresh.mp4"
    with pytest.raises(RuntimeError):
        with video.FrameWriter(fresh, FPS, (W, H), preset="ultrafast") as writer:
            writer.write(solid(1))
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]


def test_odd_size_rejected_clearly(tmp_path):
    with pytest.raises(InputError, match=r"63x48.*even"):
        video.FrameWriter(tmp_path / "odd.mp4", FPS, (63, 48))
    with pytest.raises(InputError, match="even"):
        video.FrameWriter(tmp_path / "odd.mp4", FPS, (64, 47))
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_shape_rejected(tmp_path):
    path = tmp_path / "shape.mp4"
    with pytest.raises(ValueError, match="shape"):
        with video.FrameWriter(path, FPS, (W, H), preset="ultrafast") as writer:
            writer.write(np.zeros((W, H, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        with video.FrameWriter(path, FPS, (W, H), preset="ultrafast") as writer:
            writer.write(np.zeros((H, W, 3), np.float32))
    assert not path.exists()


def test_ffmpeg_failure_surfaces_in_caller(tmp_path):
    path = tmp_path / "dies.mp4"
    with pytest.raises(MetaMusicError):
        with video.FrameWriter(path, FPS, (W, H), preset="ultrafast", queue_size=2) as writer:
            writer.write(solid(0))
            writer._proc.kill()  # ffmpeg dies mid-stream
            for _ in range(200):
                writer.write(solid(0))
    assert not path.exists() and not video.temp_path_for(path).exists()


def test_fractional_frame_rate(tmp_path):
    path = make_clip(tmp_path / "ntsc.mp4", [0] * 6, fps=30000 / 1001)
    info = video.probe(path)
    assert info.video_frames == 6 and abs(info.fps - 29.97) < 0.01


# ----------------------------------------------------------------------------------------------
# probe


def test_probe_rejects_missing_and_non_media(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        video.probe(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(InputError, match="junk.mp4"):
        video.probe(junk)


def test_probe_audio_file(tmp_path):
    info = video.probe(write_wav(tmp_path / "a.wav", 1.5))
    assert info.has_audio and info.audio_sample_rate == 22050 and not info.has_video
    assert info.video_frames is None and abs(info.duration - 1.5) < 0.02


def test_parse_probe_reads_ffmpeg_stream_lines():
    stderr = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':\n"
        "  Duration: 00:01:02.50, start: 0.000000, bitrate: 87 kb/s\n"
        "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), "
        "512x288 [SAR 1:1 DAR 16:9], 12 kb/s, 23.98 fps, 23.98 tbr, 24k tbn (default)\n"
        "  Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 192 kb/s\n"
        "  Stream #0:2[0x3](eng): Subtitle: mov_text (tx3g / 0x67337874), 0 kb/s (default)\n"
    )
    info = media_probe._parse_probe(Path("x.mp4"), stderr)
    assert info.duration == pytest.approx(62.5)
    assert (info.video_codec, info.pix_fmt, info.width, info.height) == ("h264", "yuv420p", 512, 288)
    assert info.fps == pytest.approx(23.98)
    assert (info.has_audio, info.audio_codec, info.audio_sample_rate, info.has_subtitles) == (True, "aac", 44100, True)


# ----------------------------------------------------------------------------------------------
# concat and mux


@pytest.fixture
def three_segments(tmp_path):
    return [make_clip(tmp_path / f"seg{i}.mp4", [40 + 60 * i] * n) for i, n in enumerate((5, 7, 9))]


def spy_ffmpeg(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = video.run_ffmpeg

    def spy(args, what="running", **kwargs):
        calls.append(list(args))
        return real(args, what, **kwargs)

    monkeypatch.setattr(video, "run_ffmpeg", spy)
    return calls


def test_concat_three_segments_with_audio(tmp_path, three_segments, monkeypatch):
    song = write_wav(tmp_path / "song.wav", 5.0)
    out = tmp_path / "out.mp4"
    calls = spy_ffmpeg(monkeypatch)
    result = video.concat_videos(three_segments, out, audio=song, duration=2.0)
    assert result.stream_copy and result.frames == 20
    concat_call = [c for c in calls if "concat" in c]
    assert len(concat_call) == 1 and "copy" in concat_call[0] and "libx264" not in concat_call[0]

    info = video.probe(out)
    seg = video.probe(three_segments[0])
    assert (info.video_codec, info.width, info.height, info.pix_fmt, info.fps) == \
        (seg.video_codec, seg.width, seg.height, seg.pix_fmt, seg.fps)
    assert info.video_frames == 20
    assert info.has_audio and info.audio_codec == "aac"
    assert abs(info.duration - 2.0) <= 1 / FPS
    assert abs(len(decode_audio(out)) / 22050 - 2.0) < 0.01  # audio trimmed to the sample
    # stream copy: decoded frames are bit-identical to the segments' frames
    assert np.array_equal(video.extract_frame(out, 5), video.extract_frame(three_segments[1], 0))
    assert not video.temp_path_for(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "seg0.mp4", "seg1.mp4", "seg2.mp4", "song.wav"]


def test_concat_without_duration_adds_up_frames(tmp_path, three_segments):
    out = tmp_path / "all.mp4"
    video.concat_videos(three_segments, out)
    info = video.probe(out)
    assert info.video_frames == 21 and not info.has_audio
    means = [round(float(f.mean())) for f in video.read_frames(out)]
    expected = [40] * 5 + [100] * 7 + [160] * 9
    np.testing.assert_allclose(means, expected, atol=3)


def test_concat_trims_long_audio_to_the_video(tmp_path, three_segments):
    out = tmp_path / "all.mp4"
    video.concat_videos(three_segments, out, audio=write_wav(tmp_path / "long.wav", 6.0))
    info = video.probe(out)
    assert info.video_frames == 21 and abs(info.duration - 2.1) <= 1 / FPS


def test_concat_paths_with_spaces_and_quotes(tmp_path):
    folder = tmp_path / "it's a \"dir\""
    folder.mkdir()
    segs = [make_clip(folder / f"seg '{i}' x.mp4", [20 * i] * 3) for i in range(2)]
    out = folder / "out 'final'.mp4"
    video.concat_videos(segs, out)
    assert video.probe(out).video_frames == 6


def test_concat_line_escapes_single_quotes(tmp_path):
    line = video._concat_line(tmp_path / "it's.mp4")
    assert line == "file '" + str((tmp_path / "it").resolve()) + "'\\''s.mp4'\n"
    with pytest.raises(InputError, match="line breaks"):
        video._concat_line(tmp_path / "a\nb.mp4")


def test_concat_mismatched_segments(tmp_path, monkeypatch):
    a = make_clip(tmp_path / "a.mp4", [50] * 4)
    b = make_clip(tmp_path / "b.mp4", [150] * 4, size=(32, 24))
    with pytest.raises(InputError, match=r"b\.mp4.*width"):
        video.concat_videos([a, b], tmp_path / "refused.mp4", reencode=False)
    assert not (tmp_path / "refused.mp4").exists()
    calls = spy_ffmpeg(monkeypatch)
    result = video.concat_videos([a, b], tmp_path / "auto.mp4")  # reencode=None: re-encode when needed
    assert not result.stream_copy and any("libx264" in c for c in calls)
    info = video.probe(tmp_path / "auto.mp4")
    assert (info.width, info.height, info.video_frames) == (W, H, 8)


def test_audio_offset_skips_into_the_song(tmp_path, three_segments):
    song = write_wav(tmp_path / "late.wav", 4.0, tone_from=1.0)  # silent first second
    plain, shifted = tmp_path / "plain.mp4", tmp_path / "shifted.mp4"
    video.concat_videos(three_segments, plain, audio=song, duration=1.0)
    video.concat_videos(three_segments, shifted, audio=song, duration=1.0, audio_offset=1.0)
    head = slice(2000, 20000)  # skip the AAC start-up
    assert np.sqrt(np.mean(decode_audio(plain)[head] ** 2)) < 0.01
    assert np.sqrt(np.mean(decode_audio(shifted)[head] ** 2)) > 0.2


def test_mux_audio_copies_video(tmp_path, three_segments):
    out = tmp_path / "muxed.mp4"
    video.mux_audio(three_segments[2], write_wav(tmp_path / "a.wav", 3.0), out)
    info = video.probe(out)
    assert info.has_audio and info.audio_codec == "aac" and info.video_frames == 9
    assert abs(info.duration - 0.9) <= 1 / FPS
    assert np.array_equal(video.extract_frame(out, 3), video.extract_frame(three_segments[2], 3))


def test_concat_refuses_non_audio_music(tmp_path, three_segments):
    with pytest.raises(InputError, match="no audio stream"):
        video.concat_videos(three_segments, tmp_path / "x.mp4", audio=three_segments[0])
    assert not (tmp_path / "x.mp4").exists()


# ----------------------------------------------------------------------------------------------
# Frame timing of joined videos (issue 19)


def bframe_clip(path: Path, n: int, fps: float = FPS, size=(W, H)) -> Path:
    """A clip as older MetaMusic versions wrote segments: libx264 with its default B-frames."""
    subprocess.run(
        [video.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc=size={size[0]}x{size[1]}:rate={fps}", "-frames:v", str(n), "-c:v", "libx264",
         "-preset", "medium", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


def assert_even(path: Path, n: int, fps: float = FPS) -> None:
    """``path`` has ``n`` frames, frame k shown at exactly k / fps and lasting exactly 1 / fps."""
    from fractions import Fraction

    timing = video.frame_timing(path)
    assert len(timing) == n
    period = Fraction(1) / Fraction(fps)
    assert [pts * timing.time_base for pts in timing.pts] == [k * period for k in range(n)], timing
    assert {d * timing.time_base for d in timing.durations} == {period}, timing


def test_frame_writer_writes_no_b_frames(tmp_path):
    info = video.probe(make_clip(tmp_path / "a.mp4", [10, 50, 90, 130, 170]))
    assert info.reordered is False and info.even is True


def test_join_of_one_frame_segments_keeps_every_frame_one_period(tmp_path):
    counts = [5, 1, 3, 1, 1, 4]  # segments of one frame between longer ones (issue 19)
    paths, k = [], 0
    for i, n in enumerate(counts):
        paths.append(make_clip(tmp_path / f"{i}.mp4", [(k + j) * 15 % 250 for j in range(n)]))
        k += n
    result = video.concat_videos(paths, tmp_path / "out.mp4", duration=sum(counts) / FPS)
    assert result.stream_copy
    assert_even(tmp_path / "out.mp4", sum(counts))
    info = video.probe(tmp_path / "out.mp4")
    assert info.fps == FPS and info.even


def test_b_frame_segments_are_reencoded_with_even_timing(tmp_path):
    counts = [5, 1, 4, 1]
    paths = [bframe_clip(tmp_path / f"{i}.mp4", n) for i, n in enumerate(counts)]
    infos = [video.probe(p) for p in paths]
    assert infos[0].reordered  # the old writer's files
    _, why = video.first_mismatch(infos)
    assert "B-frames" in why
    with pytest.raises(InputError, match="B-frames"):
        video.concat_videos(paths, tmp_path / "x.mp4", reencode=False, infos=infos)
    result = video.concat_videos(paths, tmp_path / "out.mp4", duration=sum(counts) / FPS, infos=infos)
    assert not result.stream_copy
    assert_even(tmp_path / "out.mp4", sum(counts))


def test_frame_timing_reads_uneven_stored_timestamps(tmp_path):
    """The old stream-copy join of B-frame files gave frames that last several periods: frame_timing sees it."""
    paths = [bframe_clip(tmp_path / f"{i}.mp4", n) for i, n in enumerate([5, 1, 4])]
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"file '{p}'\n" for p in paths))
    subprocess.run([video.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
                    str(lst), "-c", "copy", str(tmp_path / "old.mp4")], check=True)
    timing = video.frame_timing(tmp_path / "old.mp4")
    assert len(timing) == 10 and timing.period() is None
    assert not video.probe(tmp_path / "old.mp4").even
