"""What a new user tripped over: storyboard weights, preview resumes, saved devices, failed loads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from helpers import FPS, LYRICS, fast_flags, model_flags, run_main


def fast() -> list[str]:
    """Each render here: 32x32, -ips 2, 2 cut-outs, seed 3, no storyboard sheets."""
    return fast_flags(ips=2, cuts=2, seed=3, sheets=False)


def generate(args: list[str], cwd: Path):
    """generate.py with these flags, run in this process (no interpreter start-up)."""
    return run_main("generate.py", args, cwd)


@pytest.fixture(scope="module")
def lyrics_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lyr") / "lyrics.csv"
    path.write_text(LYRICS, encoding="utf-8")
    return path


def test_fused_audio_weight_zero_is_text_only_and_silent_segments_hold(tiny_models, song_wav, lyrics_csv, tmp_path):
    out = tmp_path / "v.mp4"
    proc = generate(["-ap", str(song_wav), "-lyr", str(lyrics_csv), *model_flags(tiny_models), *fast(),
                     "--mode", "fused", "--audio_weight", "0", "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "v.run"
    board = yaml.safe_load((run_dir / "storyboard.yaml").read_text())["segments"]
    tasks = json.loads((run_dir / "run.json").read_text())["tasks"]
    lead_in = [s for s in board if s["text"] is None]
    assert lead_in and all(s["audio_weight"] == 0.0 for s in board)
    for s in board:  # no prompt at all: no steps, the image holds; a lyric: its planned steps
        expected = 0 if s["text"] is None else s["steps"]
        assert tasks[f"segment_{s['index']:05d}"]["steps"] == expected, s
    from metamusic.media.video import read_frames

    frames = list(read_frames(out))
    assert len(frames) == round(6.0 * FPS)
    first_lyric = round(min(s["start"] for s in board if s["text"]) * FPS)
    assert all((f == frames[0]).all() for f in frames[:first_lyric])  # the held start image


def test_storyboard_weight_edit_changes_the_render(tiny_models, song_wav, lyrics_csv, tmp_path):
    """The weights in storyboard.yaml are what renders, for every kind of segment."""
    from metamusic.config import Config
    from metamusic.render.inputs import check_inputs
    from metamusic.render.plan import song_timeline
    from metamusic.render.prepare import encode_targets, load_models

    config = Config()
    config.music.audio, config.music.lyrics = str(song_wav), str(lyrics_csv)
    config.models.vqgan_config, config.models.vqgan_checkpoint = tiny_models["vqgan_config"], tiny_models["vqgan_checkpoint"]
    config.models.clip_model, config.models.wav2clip_checkpoint = tiny_models["clip"], tiny_models["wav2clip"]
    config.output.output, config.output.size = str(tmp_path / "v.mp4"), (32, 32)
    inputs = check_inputs(config)
    segments, _ = song_timeline(config, inputs)
    models = load_models(config, need_audio=True)
    audio = next(i for i, s in enumerate(segments) if s.kind == "audio")
    segments[audio] = dataclasses.replace(segments[audio], audio_weight=0.25)
    targets = encode_targets(config, inputs, segments, models)
    assert [t.weight for t in targets[audio]] == [0.25]


def test_resuming_a_preview_keeps_its_names_and_a_saved_gpu_is_checked(tiny_models, song_wav, tmp_path):
    out = tmp_path / "v.mp4"
    args = ["-ap", str(song_wav), *model_flags(tiny_models), *fast(), "--preview", "-o", str(out)]
    proc = generate(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    preview_run = tmp_path / "v.preview.run"
    assert (tmp_path / "v.preview.mp4").is_file() and preview_run.is_dir()
    again = generate(["--resume", str(preview_run)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already rendered" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("v.")) == ["v.preview.mp4",
                                                                                     "v.preview.run"]
    config = yaml.safe_load((preview_run / "config.yaml").read_text())
    config["device"] = "cuda:0"
    (preview_run / "config.yaml").write_text(yaml.safe_dump(config))
    gpu = generate(["--resume", str(preview_run)], tmp_path)
    assert gpu.returncode == 2
    assert "Traceback" not in gpu.stderr
    assert gpu.stderr.strip().splitlines()[-1].startswith("error: -gid 0: GPU 0 does not exist")


def test_a_failed_model_load_writes_nothing_and_the_fix_needs_no_force(tiny_models, song_wav, tmp_path):
    broken = tmp_path / "broken.ckpt"
    data = Path(tiny_models["vqgan_checkpoint"]).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    flags = model_flags(tiny_models)
    flags[flags.index("-ckpt") + 1] = str(broken)
    out = tmp_path / "v.mp4"
    proc = generate(["-ap", str(song_wav), *flags, *fast(), "-ips", "1", "-o", str(out)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert str(broken) in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    assert not (tmp_path / "v.run").exists() and not out.exists()
    fixed = generate(["-ap", str(song_wav), *model_flags(tiny_models), *fast(), "-ips", "1", "-o", str(out)],
                     tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    lines = fixed.stderr.splitlines()
    seed = next(i for i, line in enumerate(lines) if line.startswith("seed 3"))
    assert any(line.startswith("loading models: VQGAN") for line in lines[seed:])
    assert f"video:      {out}" in fixed.stderr and f"run folder: {tmp_path / 'v.run'}" in fixed.stderr
    # piped (no terminal): progress still shows, every 10% of the song's steps
    assert sum(1 for line in lines if line.startswith("steps: ")) >= 5


def test_a_run_folder_with_no_finished_task_starts_over_with_new_settings(tmp_path):
    from metamusic.config import Config
    from metamusic.errors import InputError
    from metamusic.runfolder import open_run
    from metamusic.song.timeline import Segment

    segments = [Segment(0, 0.0, 1.0, 2, "text", "a", 0, 1.0, 0.0, 0.0, 1.0)]
    first = Config()
    first.step = dataclasses.replace(first.step, cutn=4)
    run, _ = open_run(first, tmp_path / "r.run", tmp_path / "r.mp4", segments)
    second = Config()
    second.step = dataclasses.replace(second.step, cutn=8)
    run, _ = open_run(second, tmp_path / "r.run", tmp_path / "r.mp4", segments)  # not refused: nothing finished
    assert run.saved_config().step.cutn == 8
    video = run.scratch / "s.mp4"
    video.write_bytes(b"x")
    run.record_task("segment_00000", files={"segments/segment_00000.mp4": video}, states={}, stats={},
                    segments=segments)
    with pytest.raises(InputError, match="made with other settings"):
        open_run(first, tmp_path / "r.run", tmp_path / "r.mp4", segments)


def test_motion_interpolation_uses_the_crf(monkeypatch, tmp_path):
    from metamusic.media import ffmpeg
    from metamusic.render import finish

    seen = []
    monkeypatch.setattr(ffmpeg, "run_ffmpeg", lambda args, what="", **kw: seen.append(list(args)))
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    finish._motion_interpolate(video, 24.0, 1.0, 31)
    assert seen and seen[0][seen[0].index("-crf") + 1] == "31"


def test_keep_states_every_n_thins_states_and_from_segment_names_the_possible_values(tiny_models, song_wav,
                                                                                   tmp_path):
    out = tmp_path / "v.mp4"
    args = ["-ap", str(song_wav), *model_flags(tiny_models), *fast(), "-ips", "1", "--keep_states", "every:3",
            "-o", str(out)]
    proc = generate(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "v.run"
    n = len(yaml.safe_load((run_dir / "storyboard.yaml").read_text())["segments"])
    kept = sorted(int(p.stem[6:]) for p in (run_dir / "state").glob("after_*.pt"))
    assert kept == sorted({i for i in range(n) if (i + 1) % 3 == 0} | {n - 1})
    assert "MB)" in proc.stderr  # the run folder's size is reported
    refused = generate([*args, "--from_segment", "2"], tmp_path)
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()[-1]
    assert "--from_segment 2: the state after segment 1 was not kept" in line and "0, 3, 6" in line
    again = generate([*args, "--from_segment", "3"], tmp_path)
    assert again.returncode == 0, again.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["this_run"]["tasks_run"] == n - 3
    bad = generate([*args[:-4], "--keep_states", "some", "-o", str(tmp_path / "w.mp4")], tmp_path)
    assert bad.returncode == 2 and "--keep_states some" in bad.stderr and not (tmp_path / "w.run").exists()
