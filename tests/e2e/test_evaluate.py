"""evaluate.py: metric math on constructed inputs, the driver against hand-computed cosines, the CLI end to end."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import Result, run_main, run_script

from metamusic import evaluate as ev
from metamusic.errors import InputError

FPS = 10
SIZE = 48  # frame side in pixels (even, and not CLIP's input size so the resize is exercised)
SONG_SECONDS = 4.0
LYRICS = "timestamp,text\n00:01,a red sunrise over the hills\n00:02.5,the deep blue ocean\n"


# --------------------------------------------------------------------------- helpers


def pattern(k: int) -> np.ndarray:
    """A deterministic frame (H, W, 3) uint8 that changes slowly with k."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    r = (x * 5 + k * 3) % 256
    g = (y * 5 + k * 7) % 256
    b = ((x + y) * 3 + k * 11) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def embed(perceptor, frames: list[np.ndarray]) -> torch.Tensor:
    """CLIP image embeddings (N, D) of full frames resized bicubic+antialias to CLIP's size (done here by hand)."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
    r = perceptor.input_resolution
    x = F.interpolate(x, size=(r, r), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    with torch.no_grad():
        return perceptor.encode_image(perceptor.normalize(x)).float()  # (N, D)


def unit_cos(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Cosine by hand: rows of a (N, D) against b (D,)."""
    a64, b64 = a.double(), b.double()
    return ((a64 @ b64) / (a64.norm(dim=-1) * b64.norm())).numpy()


@pytest.fixture(scope="module")
def models(tiny_models):
    from metamusic.models.clip import load_clip
    from metamusic.models.wav2clip_loader import load_wav2clip

    return load_clip(tiny_models["clip"], "cpu"), load_wav2clip(tiny_models["wav2clip"], "cpu")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A 4 s song, a 4 s video with that song muxed in, the same video cut 1 s short, a lyric file."""
    from metamusic.media.video import FrameWriter, mux_audio
    from metamusic.song.audio import synth_song, write_wav

    d = tmp_path_factory.mktemp("eval_media")
    song = write_wav(d / "song.wav", synth_song(SONG_SECONDS, sample_rate=16000, seed=3), 16000)
    with FrameWriter(d / "silent.mp4", FPS, (SIZE, SIZE), preset="ultrafast") as w:
        for k in range(int(SONG_SECONDS * FPS)):
            w.write(pattern(k))
    with FrameWriter(d / "short.mp4", FPS, (SIZE, SIZE), preset="ultrafast") as w:
        for k in range(int((SONG_SECONDS - 1) * FPS)):
            w.write(pattern(k))
    video = mux_audio(d / "silent.mp4", song, d / "video.mp4").path
    lyrics = d / "lyrics.csv"
    lyrics.write_text(LYRICS, encoding="utf-8")
    return {"song": song, "video": video, "short": d / "short.mp4", "lyrics": lyrics, "dir": d}


# --------------------------------------------------------------------------- pure metrics


def test_identical_frames_are_perfectly_smooth(models):
    perceptor, _ = models
    frames = [noise(0)] * 5
    mean, pairs = ev.temporal_smoothness(embed(perceptor, frames))
    assert pairs.shape == (4,)
    assert mean == pytest.approx(1.0, abs=1e-6)
    change, per_pair = ev.pixel_change(np.stack(frames))
    assert change == 0.0 and per_pair.shape == (4,) and not per_pair.any()


def test_alternating_images_score_lower_on_both(models):
    perceptor, _ = models
    a, b = noise(1), np.full((SIZE, SIZE, 3), 30, np.uint8)
    frames = [a, b, a, b, a]
    mean, pairs = ev.temporal_smoothness(embed(perceptor, frames))
    assert mean < 0.999 and np.all(pairs < 0.999)
    # the per-pair value is the plain cosine of the two images' embeddings
    e = embed(perceptor, [a, b])
    assert pairs[0] == pytest.approx(float(unit_cos(e[:1], e[1])[0]), abs=1e-6)
    change, per_pair = ev.pixel_change(iter(frames))  # an iterator works too
    expected = np.abs(a.astype(int) - b.astype(int)).mean() / 255
    assert change == pytest.approx(expected) and np.allclose(per_pair, expected)
    assert 0 < change <= 1


def test_text_and_audio_alignment_equal_hand_cosines(models):
    perceptor, wav2clip = models
    frames_e = embed(perceptor, [pattern(0), noise(2), pattern(30)])
    with torch.no_grad():
        text_e = perceptor.encode_text(["a red sunrise"])[0]
        audio_e = wav2clip(torch.from_numpy(np.random.default_rng(4).uniform(-0.5, 0.5, (1, 8000)).astype(np.float32)))[0]
    assert np.allclose(ev.text_alignment(frames_e, text_e), unit_cos(frames_e, text_e), atol=1e-6)
    assert np.allclose(ev.audio_alignment(frames_e, audio_e), unit_cos(frames_e, audio_e), atol=1e-6)
    assert ev.cosine([1.0, 0.0], [0.0, 2.0]) == 0.0 and ev.cosine([1.0, 1.0], [3.0, 3.0]) == pytest.approx(1.0)


def test_av_sync_detects_one_second_short_video():
    short = ev.av_sync(3.0, 4.0, FPS)
    assert short["difference"] == pytest.approx(-1.0) and short["within_one_frame"] is False
    assert ev.av_sync(4.0 + 0.5 / FPS, 4.0, FPS)["within_one_frame"] is True
    assert ev.av_sync(4.0 + 1.5 / FPS, 4.0, FPS)["within_one_frame"] is False


def test_largest_jump_finds_the_cut():
    changes = np.array([0.01, 0.02, 0.9, 0.03])
    times = np.arange(5) / FPS
    i, t, v = ev.largest_jump(changes, times)
    assert (i, v) == (2, 0.9) and t == pytest.approx(0.3)
    assert ev.largest_jump(np.zeros(0), np.zeros(1))[0] == -1


def test_segments_from_lyrics_windows_and_frame_owners():
    from metamusic.song.lyrics import parse_lyrics

    segs = ev.lyric_segments(parse_lyrics(LYRICS), SONG_SECONDS)
    assert [(s.start, s.end, s.kind, s.text) for s in segs] == [
        (0.0, 1.0, "audio", None),
        (1.0, 2.5, "text", "a red sunrise over the hills"),
        (2.5, 4.0, "text", "the deep blue ocean"),
    ]
    assert [(s.start, s.end) for s in ev.fixed_windows(5.0)] == [(0, 2), (2, 4), (4, 5)]
    owners = ev.segment_of_frames(np.array([0, 9, 10, 24, 25, 39, 40]), segs, FPS)
    assert owners.tolist() == [0, 0, 1, 1, 2, 2, -1]
    assert ev.audio_window(1.0, 1.1, 4.0) == pytest.approx((0.925, 1.175))
    assert ev.audio_window(0.0, 0.05, 4.0) == pytest.approx((0.0, 0.25))  # kept inside the song


# --------------------------------------------------------------------------- the driver


def test_driver_matches_hand_computed_scores(models, media):
    from metamusic.media.video import read_frames
    from metamusic.song.audio import load_audio

    perceptor, wav2clip = models
    result = ev.evaluate(media["video"], media["song"], media["lyrics"], perceptor, wav2clip, batch=7)
    assert result.segment_source == "lyrics" and len(result.segments) == 3
    assert len(result.frame_index) == SONG_SECONDS * FPS
    assert result.sync["within_one_frame"] is True

    frames = list(read_frames(media["video"]))  # the decoded frames, embedded here independently
    e = embed(perceptor, frames)
    with torch.no_grad():
        text_e = perceptor.encode_text(["a red sunrise over the hills"])[0]
    seg1 = slice(10, 25)  # [1.0, 2.5) at 10 fps
    assert np.allclose(result.text_scores[seg1], unit_cos(e[seg1], text_e), atol=1e-5)
    assert np.isnan(result.text_scores[:10]).all()  # the lead-in has no lyric
    assert result.segments[1].text_alignment == pytest.approx(float(unit_cos(e[seg1], text_e).mean()), abs=1e-5)

    song = load_audio(media["song"], 16000)
    with torch.no_grad():
        audio_e = wav2clip(torch.from_numpy(song.samples[16000:40000]).unsqueeze(0))[0]  # [1.0, 2.5) s
    assert np.allclose(result.audio_scores[seg1], unit_cos(e[seg1], audio_e), atol=1e-5)
    pairs = ev.temporal_smoothness(e)[1]  # pair i joins frames i and i + 1
    assert result.overall["smoothness"] == pytest.approx(float(pairs.mean()), abs=1e-5)
    # a pair belongs to the segment of its second frame: frames 10..24 -> pairs 9..23
    assert result.segments[1].smoothness == pytest.approx(float(pairs[9:24].mean()), abs=1e-5)
    assert result.segments[1].pixel_change == pytest.approx(ev.pixel_change(frames[9:25])[0])
    assert result.overall["pixel_change"] == pytest.approx(ev.pixel_change(frames)[0])


def test_driver_every_nth_frame_and_short_video(models, media):
    perceptor, wav2clip = models
    result = ev.evaluate(media["short"], media["song"], None, perceptor, wav2clip, every=3)
    assert result.frame_index.tolist() == list(range(0, 30, 3))
    assert result.segment_source == "windows" and [s.n_frames for s in result.segments] == [7, 3]
    assert result.sync["difference"] == pytest.approx(-1.0, abs=0.01)
    assert result.sync["within_one_frame"] is False
    assert math.isnan(result.overall["text_alignment"])


def test_frame_times_come_from_timestamps_not_the_average_rate(models, media, tmp_path):
    """A 10 fps video whose last frame the container stretches: `ffmpeg -i` says 8 fps (issue 19)."""
    from metamusic.media.video import FrameWriter, ffmpeg_exe, probe

    n = int(SONG_SECONDS * FPS)
    with FrameWriter(tmp_path / "even.mp4", FPS, (SIZE, SIZE), preset="ultrafast") as w:
        for k in range(n):
            w.write(pattern(k) if k < 20 else 255 - pattern(k))  # the cut: frame 20, at 2.0 s
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(tmp_path / "even.mp4"), "-c", "copy",
                    "-bsf:v", f"setts=duration=if(eq(N\\,{n - 1})\\,DURATION*16\\,DURATION)",
                    str(tmp_path / "stretched.mp4")], check=True)
    video = tmp_path / "stretched.mp4"
    assert probe(video).fps < 9  # the container's average rate is wrong
    perceptor, wav2clip = models
    result = ev.evaluate(video, media["song"], media["lyrics"], perceptor, wav2clip)
    assert result.fps == pytest.approx(FPS)
    assert np.allclose(result.frame_time, np.arange(n) / FPS)
    assert result.largest_pixel_jump["time"] == pytest.approx(2.0) and result.largest_pixel_jump["frame"] == 20
    assert result.sync["within_one_frame"] is True and result.sync["difference"] == pytest.approx(0.0, abs=1e-6)
    assert [s.n_frames for s in result.segments] == [10, 15, 15]


def test_frame_clock():
    times, rate, length = ev.frame_clock([0.0, 0.1, 0.2, 0.5, 0.6])  # one frame held for three periods
    assert rate == pytest.approx(10.0) and length == pytest.approx(0.7) and times.tolist() == [0.0, 0.1, 0.2, 0.5, 0.6]
    times, rate, length = ev.frame_clock(np.zeros(4), fps=25)  # a run folder: its configured rate
    assert times.tolist() == [0.0, 0.04, 0.08, 0.12] and rate == 25 and length == pytest.approx(0.16)


# --------------------------------------------------------------------------- command line


def run_cli(args: list[str], cwd: Path) -> Result:
    """``python evaluate.py args...``, run in this process (its exit status and output)."""
    return run_main("evaluate.py", args, cwd)


def clip_flags(tiny: dict[str, str]) -> list[str]:
    """evaluate.py's model flags: the tiny CLIP and Wav2CLIP, on the CPU."""
    return ["-m", tiny["clip"], "--wav2clip_checkpoint", tiny["wav2clip"], "-gid", "cpu"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cli_writes_csv_json_and_plot(tiny_models, media, tmp_path):
    out = tmp_path / "report"
    proc = run_script("evaluate.py", [str(media["video"]), "-ap", str(media["song"]), "-lyr", str(media["lyrics"]),
                                      *clip_flags(tiny_models), "-o", str(out)],
                      tmp_path, timeout=300)  # the real script, in its own process: one full run of it
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(out / "metrics.csv")
    assert list(rows[0]) == list(ev.CSV_COLUMNS)
    assert [r["kind"] for r in rows] == ["audio", "text", "text"]
    assert [int(r["n_frames"]) for r in rows] == [10, 15, 15]
    assert rows[0]["text_alignment"] == "" and rows[1]["text_alignment"] != ""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["segments"] == 3 and summary["av_sync"]["within_one_frame"] is True
    assert 0 < summary["overall"]["smoothness"] <= 1
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*partial*"))  # atomic writes leave no temporary file
    assert "render" not in summary  # a bare video has no run.json to report


def test_cli_reads_a_run_folder(tiny_models, media, tmp_path):
    from metamusic.config import Config
    from metamusic.runfolder import RunFolder
    from metamusic.song.timeline import Segment

    config = Config()
    config.music.audio = str(media["song"])
    config.music.lyrics = str(media["lyrics"])
    config.models.clip_model = tiny_models["clip"]
    config.models.wav2clip_checkpoint = tiny_models["wav2clip"]
    config.output.output = str(media["short"].with_suffix(".png"))  # the renderer writes <stem>.mp4
    config.output.fps = FPS  # the rate the video was rendered at: frame k shows k / fps
    run = RunFolder(tmp_path / "short.run")
    run.create()
    run.write_config(config)
    bounds = [(0.0, 0.5, "audio", None), (0.5, 1.7, "text", "a red sunrise"), (1.7, 2.4, "audio", None),
              (2.4, 4.0, "audio", None)]
    run.write_storyboard([Segment(i, a, b, 3, k, t, None if t is None else 0, 1.0 if t else 0.0, 0.0 if t else 1.0, a, b)
                          for i, (a, b, k, t) in enumerate(bounds)])
    run.write_info({"totals": {"tasks": 4, "tasks_finished": 4, "steps": 12, "frames": 40, "seconds": 3.5}})
    out = tmp_path / "report"
    proc = run_cli([str(run.root), "-gid", "cpu", "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "render (run.json): 12 optimisation steps, 3.5 s over 4 of 4 tasks" in proc.stdout
    rows = read_csv(out / "metrics.csv")
    assert [(r["start"], r["kind"]) for r in rows] == [("0.000", "audio"), ("0.500", "text"), ("1.700", "audio"),
                                                          ("2.400", "audio")]
    # segments without text of their own are scored against the lyric active at their middle
    assert [r["text"] for r in rows] == ["", "a red sunrise", "a red sunrise over the hills", "the deep blue ocean"]
    assert [int(r["n_frames"]) for r in rows] == [5, 12, 7, 6]  # the video stops 1 s early
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["segment_source"] == "storyboard"
    assert summary["render"] == {"tasks": 4, "tasks_finished": 4, "steps": 12, "frames": 40, "seconds": 3.5}
    assert summary["av_sync"]["within_one_frame"] is False
    assert summary["av_sync"]["difference"] == pytest.approx(-1.0, abs=0.01)


def test_cli_missing_video_exits_2_naming_it(tmp_path):
    missing = tmp_path / "nowhere.mp4"
    proc = run_script("evaluate.py", [str(missing), "-ap", "song.wav", "-o", str(tmp_path / "o")], tmp_path,
                      timeout=300)  # the real script, in its own process
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_bad_every_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="--every"):
        ev.main([str(tmp_path / "v.mp4"), "--every", "0"])
