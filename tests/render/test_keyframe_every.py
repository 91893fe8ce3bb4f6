"""--keyframe_every N|line: fewer keyframes, each covering several segments, in the same task engine."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import frame_hashes, model_flags, run_main

from metamusic.render.plan import (
    Plan,
    keyframe_groups,
    plan_tasks,
    select_tasks,
    task_steps,
    tasks_from,
)
from metamusic.song.timeline import Segment

ROOT = Path(__file__).resolve().parents[2]
FPS = 10
SONG_SECONDS = 6.0  # the song_wav fixture: 120 bpm
LYRICS = ("timestamp,text\n00:01,a red sunrise over the hills\n00:03,the deep blue ocean\n"
          "00:04,a green forest at night\n")


def seg(i: int, lyric: int | None = None, length: float = 0.5) -> Segment:
    kind = "audio" if lyric is None else "text"
    return Segment(i, i * length, (i + 1) * length, 3, kind, None if lyric is None else f"line {lyric}", lyric,
                   0.0 if lyric is None else 1.0, 1.0 if lyric is None else 0.0, i * length, (i + 1) * length)


# ---------------------------------------------------------------------------------------------
# The plan (no models)


def test_keyframe_groups_of_n_segments_and_of_lyric_lines():
    segments = [seg(0), seg(1), seg(2, lyric=0), seg(3), seg(4), seg(5, lyric=1), seg(6, lyric=2), seg(7)]
    assert keyframe_groups(segments, 1) == tuple((i, i + 1) for i in range(8))
    assert keyframe_groups(segments, 3) == ((0, 3), (3, 6), (6, 8))  # the last one covers fewer
    assert keyframe_groups(segments, 20) == ((0, 8),)
    # line: the intro before the first line, then one keyframe from each line's start to the next.
    assert keyframe_groups(segments, "line") == ((0, 2), (2, 5), (5, 6), (6, 8))
    # A line active over several segments (fused mode) stays one keyframe; interpolate mode's halves too.
    fused = [seg(0, lyric=0), seg(1, lyric=0), seg(2), seg(3, lyric=1), seg(4, lyric=1)]
    assert keyframe_groups(fused, "line") == ((0, 3), (3, 5))


def test_default_plan_keeps_its_task_ids_and_needs():
    """One keyframe per segment: the same tasks as before --keyframe_every (existing run folders resume)."""
    warm = plan_tasks(3, keyframes=True)
    assert [(t.id, t.segments, t.needs) for t in warm] == [
        ("keyframes_00000", (0,), ()),
        ("keyframes_00001", (1,), ("keyframes_00000",)),
        ("keyframes_00002", (2,), ("keyframes_00001",)),
        ("frames_00000", (0,), ("keyframes_00000", "keyframes_00001")),
        ("frames_00001", (1,), ("keyframes_00000", "keyframes_00001", "keyframes_00002")),
        ("frames_00002", (2,), ("keyframes_00001", "keyframes_00002")),
    ]
    batched = plan_tasks(3, keyframes=True, independent=True, batch=2)
    assert [(t.id, t.segments, t.needs) for t in batched] == [
        ("keyframes_00000", (0, 1), ()),
        ("keyframes_00002", (2,), ()),
        ("frames_00000", (0,), ("keyframes_00000",)),
        ("frames_00001", (1,), ("keyframes_00000", "keyframes_00002")),
        ("frames_00002", (2,), ("keyframes_00000", "keyframes_00002")),
    ]
    assert plan_tasks(3, keyframes=True, groups=[(0, 1), (1, 2), (2, 3)]) == warm


def grouped_plan(every, independent=False, batch=1) -> Plan:
    segments = tuple(seg(i, lyric=0 if i == 3 else None) for i in range(10))
    groups = keyframe_groups(segments, every)
    tasks = plan_tasks(len(segments), keyframes=True, independent=independent, batch=batch, groups=groups)
    return Plan(segments, tuple(tasks), 10.0, 5.0, (32, 32), True, 0, groups=groups, beat_pulse=True)


def test_grouped_keyframes_are_named_after_their_first_segment():
    plan = grouped_plan(4)
    keys = [t for t in plan.tasks if t.kind == "keyframes"]
    assert [(t.id, t.segments, t.needs) for t in keys] == [
        ("keyframes_00000", (0, 1, 2, 3), ()),
        ("keyframes_00004", (4, 5, 6, 7), ("keyframes_00000",)),
        ("keyframes_00008", (8, 9), ("keyframes_00004",)),
    ]
    frames = {t.segments[0]: t.needs for t in plan.tasks if t.kind == "frames"}
    assert sorted(frames) == list(range(10))  # still one frames task (one video) per segment
    assert frames[2] == ("keyframes_00000", "keyframes_00004")
    assert frames[5] == ("keyframes_00000", "keyframes_00004", "keyframes_00008")
    assert frames[9] == ("keyframes_00004", "keyframes_00008")
    assert [plan.group_of(i) for i in range(10)] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert plan.to_dict()["keyframe_groups"] == [[0, 4], [4, 8], [8, 10]]

    from metamusic.config import Config

    config = Config()
    config.keyframes.steps = 7
    assert [task_steps(config, plan, t) for t in keys] == [7, 7, 7]  # steps per keyframe, not per segment
    batched = grouped_plan(4, independent=True, batch=2)
    assert [(t.id, task_steps(config, batched, t)) for t in batched.tasks if t.kind == "keyframes"] == [
        ("keyframes_00000", 14), ("keyframes_00008", 7)]
    config.output.preview = True
    assert task_steps(config, plan, keys[0]) == 3  # --preview_steps caps them


def test_from_segment_inside_a_keyframe_redoes_that_keyframe_and_what_needs_it():
    plan = grouped_plan(4)
    redo = tasks_from(plan, 6)
    assert {"keyframes_00000"} & redo == set()
    assert {"keyframes_00004", "keyframes_00008"} <= redo  # keyframe 4 covers segment 6; 8 follows it
    # Frames of segments 0-3 move toward keyframe 4, so they are re-rendered; none is kept that needs a redone task.
    assert all(f"frames_{i:05d}" in redo for i in range(10))
    finished = {t.id for t in plan.tasks}
    assert [t.id for t in select_tasks(plan, finished, 6)] == [t.id for t in plan.tasks if t.id in redo]


# ---------------------------------------------------------------------------------------------
# Renders with the tiny checkpoints


@pytest.fixture(scope="module")
def render_args(tiny_models, song_wav, tmp_path_factory) -> list[str]:
    lyrics = tmp_path_factory.mktemp("lyrics") / "lyrics.csv"
    lyrics.write_text(LYRICS, encoding="utf-8")
    return ["-ap", str(song_wav), "-lyr", str(lyrics), *model_flags(tiny_models), "-gid", "cpu", "-s", "32", "32",
            "--fps", str(FPS), "-cuts", "4", "-sd", "7", "--precision", "fp32", "--keyframes",
            "--keyframe_steps", "6"]


def generate_here(args: list[str], cwd: Path) -> str:
    """Render in this process (no start-up cost); returns what it logged."""
    proc = run_main("generate.py", args, cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def assert_song_length(video: Path) -> None:
    from metamusic.media.video import probe

    info = probe(video)
    assert info.video_frames == round(SONG_SECONDS * FPS), info
    assert abs(info.duration - SONG_SECONDS) <= 1.0 / FPS, info
    assert info.fps == FPS and info.even, info  # every frame lasts 1 / fps
    assert info.has_audio and info.audio_codec == "aac", info


def expected_groups(run_dir: Path, every) -> list[tuple[int, int]]:
    """Keyframes counted from the storyboard, independently of the plan's code."""
    board = yaml.safe_load((run_dir / "storyboard.yaml").read_text())["segments"]
    n = len(board)
    if every == "line":
        firsts = [0] + [s["index"] for s in board[1:] if s["lyric_index"] is not None]
    else:
        firsts = list(range(0, n, every))
    return list(zip(firsts, firsts[1:] + [n]))


def check_render(log: str, out: Path, every) -> list[tuple[int, int]]:
    """The video is as long as the song and the run folder holds one optimised keyframe per group."""
    assert_song_length(out)
    run_dir = out.with_suffix(".run")
    groups = expected_groups(run_dir, every)
    n_segments = groups[-1][1]
    if every == "line":
        assert len(groups) == 1 + LYRICS.count("\n00:")  # the intro and one keyframe per line
    else:
        assert len(groups) == math.ceil(n_segments / every)
    assert len(groups) < n_segments
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["keyframe_groups"] == [list(g) for g in groups]
    assert sorted(p.name for p in (run_dir / "keyframes").glob("key_*.pt")) == [f"key_{a:05d}.pt" for a, _ in groups]
    assert len(list((run_dir / "tasks").glob("frames_*.json"))) == n_segments
    info = json.loads((run_dir / "run.json").read_text())
    assert info["totals"]["frames"] == round(SONG_SECONDS * FPS)
    assert f"keyframe mode: {len(groups)} keyframes" in log
    return groups


@pytest.fixture(scope="module")
def every_2(render_args, tmp_path_factory) -> Path:
    """A finished --keyframe_every 2 render (warm-started keyframes): its video."""
    out = tmp_path_factory.mktemp("every_2") / "v.mp4"
    check_render(generate_here([*render_args, "--keyframe_every", "2", "-o", str(out)], out.parent), out, 2)
    return out


def test_keyframe_every_2_optimises_half_the_keyframes(every_2):
    run_dir = every_2.with_suffix(".run")
    groups = expected_groups(run_dir, 2)
    keyframe_tasks = sorted(p.stem for p in (run_dir / "tasks").glob("keyframes_*.json"))
    assert keyframe_tasks == [f"keyframes_{a:05d}" for a, _ in groups]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["totals"]["steps"] == 6 * len(groups)  # --keyframe_steps per keyframe, nothing more
    record = json.loads((run_dir / "tasks" / f"keyframes_{groups[1][0]:05d}.json").read_text())
    assert [s["index"] for s in record["segments"]] == list(range(*groups[1]))  # the storyboard entries it covers


def test_one_keyframe_per_lyric_line(render_args, tmp_path):
    out = tmp_path / "v.mp4"
    log = generate_here([*render_args, "--keyframe_every", "line", "-o", str(out)], tmp_path)
    groups = check_render(log, out, "line")
    info = json.loads((tmp_path / "v.run" / "run.json").read_text())
    assert info["totals"]["steps"] == 6 * len(groups)
    board = yaml.safe_load((tmp_path / "v.run" / "storyboard.yaml").read_text())["segments"]
    assert [board[a]["text"] for a, _ in groups[1:]] == [line.split(",", 1)[1] for line in LYRICS.splitlines()[1:]]


def test_preview_of_independent_batched_keyframes_per_line(render_args, tmp_path):
    out = tmp_path / "v.mp4"
    log = generate_here([*render_args, "--keyframe_every", "line", "--independent_keyframes", "--batch_keyframes", "2",
                         "--preview", "--preview_steps", "2", "-o", str(out)], tmp_path)
    assert not out.exists()
    groups = check_render(log, tmp_path / "v.preview.mp4", "line")
    run_dir = tmp_path / "v.preview.run"
    keyframe_tasks = sorted(p.stem for p in (run_dir / "tasks").glob("keyframes_*.json"))
    assert keyframe_tasks == [f"keyframes_{a:05d}" for a, _ in groups[::2]]  # batches of two keyframes
    info = json.loads((run_dir / "run.json").read_text())
    assert info["totals"]["steps"] == 2 * len(groups)  # --preview_steps per keyframe


def test_killed_render_resumes_to_the_uninterrupted_video(render_args, every_2, tmp_path):
    args = [*render_args, "--keyframe_every", "2"]
    out, run_dir = tmp_path / "v.mp4", tmp_path / "v.run"
    cmd = [sys.executable, str(ROOT / "generate.py"), *args, "-o", str(out)]
    marker = run_dir / "tasks" / "keyframes_00002.json"  # killed in the middle of the keyframe chain
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    plan = json.loads((run_dir / "plan.json").read_text())
    finished = list((run_dir / "tasks").glob("*.json"))
    assert 2 <= len(finished) < len(plan["tasks"])

    again = run_main("generate.py", [*args, "-o", str(out)], tmp_path)  # the same command, in-process
    assert again.returncode == 0, again.stderr
    assert f"resuming {run_dir}" in again.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["this_run"]["tasks_run"] == len(plan["tasks"]) - len(finished)  # finished tasks were kept
    assert frame_hashes(out) == frame_hashes(every_2)
    assert_song_length(out)


# ---------------------------------------------------------------------------------------------
# bench/video_cost.py's counting part (exact, from the plan; no models, no timing)


def test_video_cost_counts_steps_per_second_of_video_from_the_plan():
    import importlib.util

    spec = importlib.util.spec_from_file_location("metamusic_bench_video_cost", ROOT / "bench" / "video_cost.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    counts = bench.count_all(256)
    # The example song: 8 s, 16 segments (beats and lyric onsets), 8 lyric lines from 0:00 on.
    assert {c["video_seconds"] for c in counts.values()} == {8.0}
    assert counts["frame_ips0"]["steps"] == 882  # -ips 0: 10 + 110 x peak volume steps per second of each segment
    # 20 steps per warm-started keyframe by default
    assert counts["keyframes_per_segment"]["keyframes"] == 16 and counts["keyframes_per_segment"]["steps"] == 16 * 20
    assert counts["keyframe_every_4"]["keyframes"] == 4 and counts["keyframe_every_4"]["steps"] == 4 * 20
    assert counts["keyframe_every_line"]["keyframes"] == 8 and counts["keyframe_every_line"]["steps"] == 8 * 20
    assert counts["preview"]["steps"] == 16 * 3 and counts["preview"]["size"] == [128, 128]
    assert counts["preview"]["cutn"] == 8
    assert all(c["frames"] == 240 for c in counts.values())  # 8 s at 30 fps in every setting
    # Four beats per keyframe at the default 20 steps is more than 10x fewer steps than frame mode at
    # -ips 0 (the target); at 50 steps per keyframe it would be 4.4x.
    assert bench.fewer_steps(counts) == pytest.approx(882 / 80) and bench.fewer_steps(counts) >= 10
    assert bench.fewer_steps(counts, "keyframe_every_4_steps_50") == pytest.approx(882 / 200)
