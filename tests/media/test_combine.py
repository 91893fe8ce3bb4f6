"""combine_mp4.py: numeric segment order, muxing the song, refusing bad input (tiny clips)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, Result, run_main, run_script

from metamusic.errors import InputError
from metamusic.media import combine, video

W, H, FPS = 64, 48, 10
FRAMES_PER_SEGMENT = 2


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    """A mono 16-bit 440 Hz wav made with numpy and the wave module."""
    t = np.arange(int(round(seconds * rate))) / rate
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes((0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
    return path


def make_segment(path: Path, marker: int, size=(W, H), fps: float = FPS) -> Path:
    """A short clip whose every frame has brightness ``marker``."""
    with video.FrameWriter(path, fps, size, preset="ultrafast") as writer:
        for _ in range(FRAMES_PER_SEGMENT):
            writer.write(np.full((size[1], size[0], 3), marker, np.uint8))
    return path


def combine_here(*args: str | Path) -> Result:
    """``python combine_mp4.py args...``, run in this process (its exit status and output)."""
    return run_main("combine_mp4.py", args, ROOT)


def segment_markers(path: Path) -> list[int]:
    """Brightness of each segment of a combined video (one value per FRAMES_PER_SEGMENT frames)."""
    means = [float(f.mean()) for f in video.read_frames(path)]
    assert len(means) % FRAMES_PER_SEGMENT == 0
    return [round(np.mean(means[i:i + FRAMES_PER_SEGMENT])) for i in range(0, len(means), FRAMES_PER_SEGMENT)]


@pytest.fixture(scope="module")
def unpadded(tmp_path_factory) -> Path:
    """Segments named 0.mp4 .. 11.mp4 (the original project's unpadded names), marker 20 * i."""
    folder = tmp_path_factory.mktemp("unpadded")
    for i in range(12):
        make_segment(folder / f"{i}.mp4", 20 * i)
    return folder


def test_segment_number():
    assert combine.segment_number(Path("segment_00012.mp4")) == 12
    assert combine.segment_number(Path("10.mp4")) == 10
    assert combine.segment_number(Path("take2_part_7.mp4")) == 7
    assert combine.segment_number(Path("final.mp4")) is None


def test_collect_sorts_numerically(unpadded):
    segments, skipped = combine.collect_segments([unpadded])
    assert [p.name for p in segments] == [f"{i}.mp4" for i in range(12)]
    assert sorted(p.name for p in unpadded.iterdir())[:4] == ["0.mp4", "1.mp4", "10.mp4", "11.mp4"]  # lexical trap
    assert skipped == []


def test_script_restores_numeric_order_and_muxes_music(unpadded, tmp_path):
    music = write_wav(tmp_path / "song.wav", 2.4)  # 12 segments x 2 frames at 10 fps = 2.4 s
    out = tmp_path / "combined.mp4"
    proc = run_script("combine_mp4.py", ["--dirs", unpadded, "--music", music, "--output", out], ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    assert segment_markers(out) == pytest.approx([20 * i for i in range(12)], abs=3)
    info = video.probe(out)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.video_frames == 24 and abs(info.duration - 2.4) <= 1 / FPS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["combined.mp4", "song.wav"]


def test_music_shorter_than_video_trims_and_warns(unpadded, tmp_path, caplog):
    music = write_wav(tmp_path / "short.wav", 1.55)
    result = combine.combine_segments([unpadded], tmp_path / "out.mp4", music=music)
    assert result.stream_copy
    assert any("1.550" in w and "cut" in w for w in result.warnings)
    info = video.probe(tmp_path / "out.mp4")
    assert abs(info.duration - 1.55) <= 1 / FPS and info.video_frames in (15, 16)


def test_music_longer_than_video_cut_to_video(unpadded, tmp_path):
    result = combine.combine_segments([unpadded], tmp_path / "out.mp4", music=write_wav(tmp_path / "long.wav", 4.0))
    assert result.warnings and result.frames == 24
    assert abs(video.probe(tmp_path / "out.mp4").duration - 2.4) <= 1 / FPS


def test_run_folders_in_given_order(tmp_path):
    runs = []
    for r in range(2):
        segdir = tmp_path / f"run{r}" / "segments"
        segdir.mkdir(parents=True)
        for i in range(3):
            make_segment(segdir / f"segment_{i:05d}.mp4", 30 + 60 * r + 20 * i)
        (segdir / ".segment_00003.partial.mp4").write_bytes(b"in progress")  # ignored: hidden
        make_segment(tmp_path / f"run{r}" / "final.mp4", 255)  # ignored: not in segments/
        runs.append(tmp_path / f"run{r}")
    out = tmp_path / "joined.mp4"
    result = combine.combine_segments(runs, out)
    assert [p.name for p in result.segments] == [f"segment_{i:05d}.mp4" for i in range(3)] * 2
    assert segment_markers(out) == pytest.approx([30, 50, 70, 90, 110, 130], abs=3)
    assert not video.probe(out).has_audio


def test_unnumbered_files_skipped_with_warning(tmp_path):
    folder = tmp_path / "segs"
    folder.mkdir()
    make_segment(folder / "0.mp4", 10)
    make_segment(folder / "1.mp4", 90)
    make_segment(folder / "intro.mp4", 200)
    result = combine.combine_segments([folder], tmp_path / "out.mp4")
    assert [p.name for p in result.segments] == ["0.mp4", "1.mp4"]
    assert any("intro.mp4" in w for w in result.warnings)


def test_mismatched_segment_refused_then_reencoded(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    make_segment(folder / "0.mp4", 40)
    make_segment(folder / "1.mp4", 120, size=(32, 24))
    make_segment(folder / "2.mp4", 200)
    out = tmp_path / "out.mp4"
    proc = combine_here("--dirs", folder, "--output", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "1.mp4" in lines[0] and "--reencode" in lines[0]
    assert not out.exists()

    proc = combine_here("--dirs", folder, "--output", out, "--reencode")
    assert proc.returncode == 0, proc.stderr
    info = video.probe(out)
    assert (info.width, info.height, info.video_frames) == (W, H, 6)
    assert segment_markers(out) == pytest.approx([40, 120, 200], abs=4)


def test_mismatched_frame_rate_refused(tmp_path):
    folder = tmp_path / "rates"
    folder.mkdir()
    make_segment(folder / "0.mp4", 40)
    make_segment(folder / "1.mp4", 40, fps=12)
    with pytest.raises(InputError, match=r"1\.mp4.*frame rate"):
        combine.combine_segments([folder], tmp_path / "out.mp4")
    result = combine.combine_segments([folder], tmp_path / "out.mp4", reencode=True)
    info = video.probe(tmp_path / "out.mp4")
    assert not result.stream_copy and info.fps == FPS and info.video_frames == 4


@pytest.mark.parametrize("case", ["missing_dir", "empty_dir", "missing_music", "text_music", "silent_music",
                                  "bad_output", "output_is_segment"])
def test_bad_input_exits_2_and_writes_nothing(case, unpadded, tmp_path):
    out = tmp_path / "out.mp4"
    dirs, music = [unpadded], None
    if case == "missing_dir":
        dirs = [tmp_path / "nope"]
    elif case == "empty_dir":
        (tmp_path / "empty").mkdir()
        dirs = [tmp_path / "empty"]
    elif case == "missing_music":
        music = tmp_path / "nope.wav"
    elif case == "text_music":
        music = tmp_path / "lyrics.wav"
        music.write_text("not audio")
    elif case == "silent_music":
        music = unpadded / "3.mp4"  # a video without an audio stream
    elif case == "bad_output":
        out = tmp_path / "no_such_dir" / "out.mp4"
    elif case == "output_is_segment":
        dirs = [tmp_path / "segs"]
        dirs[0].mkdir()
        out = make_segment(dirs[0] / "out_1.mp4", 77)
        before = out.read_bytes()
    args = ["--dirs", *dirs, "--output", out] + (["--music", music] if music else [])
    proc = combine_here(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    if case == "output_is_segment":
        assert out.read_bytes() == before
    else:
        assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.rglob("*"))


def test_main_is_importable_and_returns_zero(unpadded, tmp_path):
    assert combine.main(["--dirs", str(unpadded), "--output", str(tmp_path / "m.mp4")]) == 0
    assert video.probe(tmp_path / "m.mp4").video_frames == 24
