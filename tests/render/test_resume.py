"""Run folders that survive anything: SIGKILL and Ctrl-C mid-segment, resume, storyboard edits.

Renders use the tiny checkpoints on CPU. The interrupted renders and the uninterrupted references
run in subprocesses (they are killed, or run beside a test); the resumes run in this process. A
killed-and-resumed render must equal an uninterrupted one of the same seed frame for frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import Result, frame_hashes, model_flags, run_main

ROOT = Path(__file__).resolve().parents[2]
FPS = 10
LYRICS = ("timestamp,text\n00:01,a red sunrise over the hills\n00:03,the deep blue ocean\n"
          "00:04,a green forest at night\n")


def slow_flags() -> list[str]:
    """Segments of ~10 steps (-ips 20), long enough to be killed in the middle of one."""
    return ["-gid", "cpu", "-s", "32", "32", "--fps", str(FPS), "-ips", "20", "-cuts", "4", "-sd", "7"]


def script(name: str, args: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / name), *args]


def run(cmd: list[str], cwd: Path) -> Result:
    """Run ``cmd`` (``python SCRIPT ARGS...``) in this process, in ``cwd``: no interpreter start-up."""
    assert cmd[0] == sys.executable, cmd
    return run_main(Path(cmd[1]).name, cmd[2:], cwd)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def segment_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "segments").glob("segment_*.mp4"))


def n_planned(run_dir: Path) -> int:
    return len(yaml.safe_load((run_dir / "storyboard.yaml").read_text())["segments"])


@pytest.fixture(scope="module")
def lyrics_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lyr") / "lyrics.csv"
    path.write_text(LYRICS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def render_args(tiny_models, song_wav, lyrics_csv) -> list[str]:
    return ["-ap", str(song_wav), "-lyr", str(lyrics_csv), *model_flags(tiny_models), *slow_flags()]


class Reference:
    """An uninterrupted render with seed 7, started in the background (it runs while the first
    interrupted render does, one core each) and read on first use."""

    def __init__(self, render_args: list[str], work: Path):
        self.out = work / "ref.mp4"
        self.run_dir = work / "ref.run"
        self._err = open(work / "stderr.txt", "w+")
        self._proc = subprocess.Popen(script("generate.py", [*render_args, "-o", str(self.out)]), cwd=work,
                                      stdout=subprocess.DEVNULL, stderr=self._err)
        self._data: dict | None = None

    def __getitem__(self, key: str):
        if self._data is None:
            from metamusic.media.video import probe

            code = self._proc.wait(timeout=600)
            self._err.seek(0)
            assert code == 0, self._err.read()
            self._data = {
                "frames": frame_hashes(self.out),
                "segments": [frame_hashes(p) for p in segment_files(self.run_dir)],
                "duration": probe(self.out, count_frames=False).duration,
                "n": n_planned(self.run_dir),
            }
        return self._data[key]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._err.close()


@pytest.fixture(scope="module")
def reference(render_args, tmp_path_factory):
    ref = Reference(render_args, tmp_path_factory.mktemp("reference"))
    yield ref
    ref.close()


def interrupt_mid_segment(cmd: list[str], cwd: Path, run_dir: Path, sig: int) -> tuple[subprocess.Popen, str, int]:
    """Start ``cmd``; once >= 2 segments are finished and another is being written, send ``sig``.

    The signal goes to the whole process group (as Ctrl-C in a terminal, or a machine going
    away), so ffmpeg children get it too. Returns the process, its stderr and the index of the
    segment that was in progress.
    """
    err_path = cwd / f"stderr_{sig}.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        deadline = time.monotonic() + 300
        in_progress = None
        while time.monotonic() < deadline and proc.poll() is None:
            if (run_dir / "state" / "after_00001.pt").exists():
                partial = sorted((run_dir / ".scratch").glob(".segment_*.partial.mp4"))
                if partial and int(partial[-1].name.split("_")[1].split(".")[0]) >= 2:
                    in_progress = int(partial[-1].name.split("_")[1].split(".")[0])
                    os.killpg(proc.pid, sig)
                    break
            time.sleep(0.01)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert in_progress is not None, f"render ended before it could be interrupted:\n{err_path.read_text()}"
    return proc, err_path.read_text(), in_progress


def assert_equals_reference(out: Path, run_dir: Path, reference: dict) -> None:
    from metamusic.media.video import probe

    assert frame_hashes(out) == reference["frames"], "resumed video's frames differ from the uninterrupted run"
    assert [frame_hashes(p) for p in segment_files(run_dir)] == reference["segments"]
    info = probe(out, count_frames=False)
    assert info.has_audio
    assert info.duration == pytest.approx(reference["duration"], abs=0.011)


def test_sigkill_mid_segment_then_rerun_equals_uninterrupted(render_args, reference, tmp_path):
    out = tmp_path / "v.mp4"
    run_dir = tmp_path / "v.run"
    cmd = script("generate.py", [*render_args, "-o", str(out)])
    proc, stderr, in_progress = interrupt_mid_segment(cmd, tmp_path, run_dir, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, stderr
    assert not out.exists()
    done = sum(1 for i in range(reference["n"]) if (run_dir / "state" / f"after_{i:05d}.pt").exists())
    assert 2 <= done < reference["n"] and done <= in_progress

    again = run(cmd, tmp_path)  # the same command resumes
    assert again.returncode == 0, again.stderr
    assert f"resuming {run_dir} at segment" in again.stderr
    assert not list((run_dir / "segments").glob(".*partial*")), "leftovers of the killed write remain"
    assert not (run_dir / ".scratch").exists() or not list((run_dir / ".scratch").iterdir())
    assert_equals_reference(out, run_dir, reference)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_or_sigterm_exits_with_resume_command_and_resume_equals_uninterrupted(render_args, reference, tmp_path,
                                                                                     sig, status):
    """Ctrl-C (130) and SIGTERM from a scheduler or a preemptible machine (143) save alike."""
    out = tmp_path / "v.mp4"
    run_dir = tmp_path / "v.run"
    proc, stderr, in_progress = interrupt_mid_segment(script("generate.py", [*render_args, "-o", str(out)]),
                                                      tmp_path, run_dir, sig)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert "interrupted" in line and "--resume" in line and str(run_dir) in line, line
    # The abandoned segment left nothing that looks complete; finished ones are intact.
    assert not (run_dir / "segments" / f"segment_{in_progress:05d}.mp4").exists()
    assert not list((run_dir / "segments").glob(".*partial*"))
    assert not out.exists()
    done = [i for i in range(reference["n"]) if (run_dir / "state" / f"after_{i:05d}.pt").exists()]
    assert done == list(range(len(done))) and len(done) >= 2
    assert [frame_hashes(p) for p in segment_files(run_dir)] == reference["segments"][: len(done)]

    # Run exactly the command the message gives.
    command = shlex.split(line.split("resume with: ", 1)[1].split(" (or", 1)[0])
    assert command[:2] == ["python", "generate.py"]
    resumed = run([sys.executable, str(ROOT / command[1]), *command[2:]], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_equals_reference(out, run_dir, reference)


def test_edit_storyboard_and_rerender_from_segment(render_args, reference, tmp_path):
    import shutil

    reference["n"]  # wait for the reference render, then work on a copy of its run folder
    run_dir = tmp_path / "v.run"
    shutil.copytree(reference.run_dir, run_dir)
    out = tmp_path / "v.mp4"
    before = [file_hash(p) for p in segment_files(run_dir)]

    board_path = run_dir / "storyboard.yaml"
    board = yaml.safe_load(board_path.read_text())
    k = next(s["index"] for s in board["segments"] if s["text"] == "the deep blue ocean")
    assert 1 <= k < len(before) - 1 and board["segments"][k]["kind"] == "text"
    board["segments"][k]["text"] = "a burning city made of glass"
    board_path.write_text(yaml.safe_dump(board, sort_keys=False))

    proc = run(script("generate.py", [*render_args, "-o", str(out), "--from_segment", str(k)]), tmp_path)
    assert proc.returncode == 0, proc.stderr
    after = [file_hash(p) for p in segment_files(run_dir)]
    assert len(after) == len(before)
    assert after[:k] == before[:k], "segments before the edited one were touched"
    changed = [i for i in range(k, len(after)) if after[i] != before[i]]
    assert changed == list(range(k, len(after))), "segments from the edited one on were not all re-rendered"
    first_frame_k = round(board["segments"][k]["start"] * FPS)
    frames = frame_hashes(out)
    assert len(frames) == len(reference["frames"])
    assert frames[:first_frame_k] == reference["frames"][:first_frame_k]
    assert frames[first_frame_k:] != reference["frames"][first_frame_k:]
    assert yaml.safe_load(board_path.read_text())["segments"][k]["text"] == "a burning city made of glass"


def test_damaged_outputs_are_repaired_and_only_their_tasks_run_again(render_args, reference, tmp_path):
    import shutil

    n = reference["n"]  # wait for the reference render, then damage a copy of its run folder
    run_dir = tmp_path / "v.run"
    shutil.copytree(reference.run_dir, run_dir)
    a, b, c = n // 4, n // 2, (3 * n) // 4
    video_a = run_dir / "segments" / f"segment_{a:05d}.mp4"
    video_a.write_bytes(video_a.read_bytes()[: video_a.stat().st_size // 2])  # truncated
    (run_dir / "segments" / f"segment_{b:05d}.mp4").unlink()  # deleted
    state_c = run_dir / "state" / f"after_{c:05d}.pt"
    state_c.write_bytes(b"PK\x03\x04" + state_c.read_bytes()[4:-100])  # corrupt

    proc = run(script("generate.py", [*render_args, "-o", str(tmp_path / "v.mp4")]), tmp_path)
    assert proc.returncode == 0, proc.stderr
    for path, problem in ((video_a, "damaged"), (run_dir / "segments" / f"segment_{b:05d}.mp4", "missing"),
                          (state_c, "damaged")):
        assert f"{path}: {problem}" in proc.stderr, proc.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["this_run"]["tasks_run"] == 3  # only the three damaged tasks
    assert_equals_reference(tmp_path / "v.mp4", run_dir, reference)


# ---------------------------------------------------------------------------------------------
# Keyframe mode: the same task records, resume and --from_segment


def keyframe_flags(independent: bool) -> list[str]:
    extra = ["--independent_keyframes", "--batch_keyframes", "2"] if independent else []
    return ["--keyframes", "--keyframe_steps", "6", *extra]


@pytest.fixture(scope="module")
def keyframe_references(render_args, tmp_path_factory):
    """Uninterrupted keyframe renders (warm-started, independent batched), in the background."""
    refs = {}
    for independent in (False, True):
        work = tmp_path_factory.mktemp(f"kf_reference_{independent}")
        refs[independent] = Reference([*render_args, *keyframe_flags(independent)], work)
    yield refs
    for ref in refs.values():
        ref.close()


def kill_when(cmd: list[str], cwd: Path, ready) -> subprocess.Popen:
    """Start ``cmd`` and SIGKILL its process group as soon as ``ready()`` is true."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    return proc


@pytest.mark.parametrize("independent", [False, True], ids=["warm", "independent-batched"])
def test_keyframe_render_killed_then_rerun_equals_uninterrupted(render_args, keyframe_references, independent,
                                                                 tmp_path):
    out, run_dir = tmp_path / "v.mp4", tmp_path / "v.run"
    cmd = script("generate.py", [*render_args, *keyframe_flags(independent), "-o", str(out)])
    if independent:  # killed while the frames are being written
        ready = lambda: (run_dir / "tasks" / "frames_00001.json").exists()  # noqa: E731
    else:  # killed in the middle of the keyframe chain
        ready = lambda: (run_dir / "tasks" / "keyframes_00001.json").exists()  # noqa: E731
    proc = kill_when(cmd, tmp_path, ready)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    finished = sorted(p.stem for p in (run_dir / "tasks").glob("*.json"))
    plan = json.loads((run_dir / "plan.json").read_text())
    assert 2 <= len(finished) < len(plan["tasks"]), finished

    again = run(cmd, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resuming {run_dir} at segment" in again.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["this_run"]["tasks_run"] == len(plan["tasks"]) - len(finished)  # finished tasks were kept
    assert_equals_reference(out, run_dir, keyframe_references[independent])


def test_keyframe_from_segment_keeps_earlier_tasks_byte_identical(render_args, keyframe_references, tmp_path):
    import shutil

    ref = keyframe_references[True]
    ref["n"]  # wait for the reference render, then work on a copy of its run folder
    run_dir = tmp_path / "v.run"
    shutil.copytree(ref.run_dir, run_dir)
    keys_before = {p.name: file_hash(p) for p in (run_dir / "keyframes").glob("key_*.pt")}
    videos_before = [file_hash(p) for p in segment_files(run_dir)]
    board_path = run_dir / "storyboard.yaml"
    board = yaml.safe_load(board_path.read_text())
    k = next(s["index"] for s in board["segments"] if s["text"] == "the deep blue ocean")
    board["segments"][k]["text"] = "a burning city made of glass"
    board_path.write_text(yaml.safe_dump(board, sort_keys=False))

    proc = run(script("generate.py", [*render_args, *keyframe_flags(True), "-o", str(tmp_path / "v.mp4"),
                                      "--from_segment", str(k)]), tmp_path)
    assert proc.returncode == 0, proc.stderr
    keys_after = {p.name: file_hash(p) for p in (run_dir / "keyframes").glob("key_*.pt")}
    videos_after = [file_hash(p) for p in segment_files(run_dir)]
    assert sorted(keys_after) == sorted(keys_before)
    for name, digest in keys_before.items():
        index = int(name[4:9])
        if index < (k // 2) * 2:  # the batches of two before k's are kept byte for byte
            assert keys_after[name] == digest, name
    assert keys_after[f"key_{k:05d}.pt"] != keys_before[f"key_{k:05d}.pt"]
    # Segment k - 1's second half moves toward keyframe k, so videos before k - 1 keep their bytes.
    assert videos_after[: k - 1] == videos_before[: k - 1]
    assert videos_after[k] != videos_before[k]
    info = json.loads((run_dir / "run.json").read_text())
    n = len(board["segments"])
    assert info["this_run"]["steps_run"] == 6 * (n - (k // 2) * 2)  # the batches of two from k's on


# ---------------------------------------------------------------------------------------------
# In-process checks of the run folder (fast)


def _config(tmp_path: Path, **output):
    from metamusic.config import Config

    cfg = Config()
    cfg.output.output = str(tmp_path / "v.mp4")
    for k, v in output.items():
        setattr(cfg.output, k, v)
    return cfg


class ModelsLoaded(Exception):
    """Raised instead of planning the tasks: the render got past its checks, models and run folder."""


def test_rerun_without_seed_resumes_and_changed_settings_are_refused(tiny_models, song_wav, tmp_path, monkeypatch,
                                                                     capsys):
    from metamusic import render
    from metamusic.cli import generate_main
    from metamusic.config import Config

    def stop(*args, **kwargs):
        raise ModelsLoaded

    monkeypatch.setattr(render, "load_models", lambda *args, **kwargs: None)
    monkeypatch.setattr(render, "make_plan", stop)  # right after the run folder is open
    out = tmp_path / "v.mp4"
    argv = ["-ap", str(song_wav), *model_flags(tiny_models), "-gid", "cpu", "-s", "32", "32", "--fps", str(FPS),
            "-ips", "4", "-cuts", "4", "-o", str(out)]  # no -sd
    with pytest.raises(ModelsLoaded):
        generate_main(argv)
    seed = Config.load(tmp_path / "v.run" / "config.yaml").seed
    assert isinstance(seed, int)
    with pytest.raises(ModelsLoaded):  # not refused: the saved seed is reused
        generate_main(argv)
    assert Config.load(tmp_path / "v.run" / "config.yaml").seed == seed

    capsys.readouterr()
    # A run folder with a finished task keeps its settings (one with none would start over by itself).
    (tmp_path / "v.run" / "tasks").mkdir(exist_ok=True)
    (tmp_path / "v.run" / "tasks" / "segment_00000.json").write_text('{"files": {}}')
    assert generate_main([*argv, "-cuts", "8", "-lr", "0.2"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(tmp_path / "v.run") in line and "step.cutn: 4 -> 8" in line and "step.lr: 0.1 -> 0.2" in line
    assert "--force" in line
    with pytest.raises(ModelsLoaded):  # --force starts over with a new seed
        generate_main([*argv, "-cuts", "8", "--force"])
    assert Config.load(tmp_path / "v.run" / "config.yaml").step.cutn == 8
    assert generate_main([*argv, "--from_segment", "0", "--force"]) == 2


def test_saved_seed_is_reused_unless_forced(tmp_path):
    from metamusic.render import resolve_config
    from metamusic.runfolder import RunFolder, config_differences, resolve_seed

    saved = _config(tmp_path)
    saved.seed = 123456
    RunFolder(tmp_path / "v.run").root.mkdir()
    saved.save(tmp_path / "v.run" / "config.yaml")
    again = _config(tmp_path)
    assert resolve_seed(again, tmp_path / "v.run") == 123456
    resolved = resolve_config(again)
    assert again.seed is None and resolved.seed == 123456  # the caller's config is not changed
    assert config_differences(saved, resolved) == []
    assert resolve_seed(_config(tmp_path), tmp_path / "v.run", resume=False) != 123456  # 1 in 2**31 to fail
    explicit = _config(tmp_path)
    explicit.seed = 5
    assert resolve_seed(explicit, tmp_path / "v.run") == 5
    assert config_differences(saved, explicit) == ["seed: 123456 -> 5"]


def test_cosmetic_settings_are_not_differences(tmp_path):
    from metamusic.runfolder import config_differences

    a, b = _config(tmp_path), _config(tmp_path / "elsewhere", save_every=7, save_png=True)
    b.device = "cuda:0"
    assert config_differences(a, b) == []
    b.step = dataclasses.replace(b.step, lr=0.2)
    assert config_differences(a, b) == ["step.lr: 0.1 -> 0.2"]


def test_task_records_finish_tasks_and_damage_is_detected(tmp_path):
    from metamusic.runfolder import RunFolder
    from metamusic.song.timeline import Segment

    run = RunFolder(tmp_path / "r.run")
    run.create()
    for i in range(4):
        video = run.scratch / f"segment_{i:05d}.mp4"
        video.write_bytes(b"video %d" % i)
        seg = Segment(i, i, i + 1, 2, "text", f"t{i}", i, 1.0, 0.0, i, i + 1)
        run.record_task(f"segment_{i:05d}", files={f"segments/segment_{i:05d}.mp4": video},
                        states={f"state/after_{i:05d}.pt": {"z": torch.zeros(1), "optimiser": None,
                                                             "last_image": torch.zeros(1)}},
                        stats={"steps": 2, "frames": 1, "seconds": 0.1}, segments=[seg])
    ids = [f"segment_{i:05d}" for i in range(5)]
    assert run.finished_tasks(ids) == set(ids[:4])
    assert run.rendered_entries()[2]["text"] == "t2"
    run.segment_video(1).write_bytes(b"video X")  # same size, other bytes
    run.state_path(2).unlink()
    assert run.finished_tasks(ids) == {ids[0], ids[3]}
    assert "damaged" in run.task_problem(ids[1]) and "missing" in run.task_problem(ids[2])
    (run.segments_dir / ".segment_00004.partial.mp4").write_bytes(b"half")
    (run.root / "state" / ".after_00004.abc.partial.pt").write_bytes(b"half")
    (run.root / ".storyboard.xyz.partial.yaml").write_bytes(b"half")
    run.clear_partial()
    assert not list(run.root.rglob(".*partial*")) and not run.scratch.exists()
    run.discard_tasks(ids[1:3])
    assert run.task_record(ids[1]) is None and not run.segment_video(1).exists()
    assert sorted(p.name for p in run.segments_dir.iterdir()) == ["segment_00000.mp4", "segment_00003.mp4"]


def test_damaged_state_names_the_file(tmp_path):
    from metamusic.errors import InputError
    from metamusic.runfolder import RunFolder

    run = RunFolder(tmp_path / "r.run")
    run.create()
    run.state_path(0).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match=r"after_00000\.pt: damaged state file.*--from_segment 0"):
        run.load_state(0)
    assert run.load_state(1) is None


def test_second_render_into_the_same_run_folder_is_refused(tmp_path):
    from metamusic.errors import InputError
    from metamusic.runfolder import RunFolder

    run = RunFolder(tmp_path / "r.run")
    with run.locked():
        with pytest.raises(InputError, match="another render is using this run folder"):
            with RunFolder(tmp_path / "r.run").locked():
                pass
    with run.locked():  # released on exit
        pass


def test_storyboard_times_cannot_be_edited(tmp_path):
    from metamusic.errors import InputError
    from metamusic.runfolder import RunFolder
    from metamusic.runfolder import checked_storyboard as _checked_storyboard
    from metamusic.song.timeline import Segment

    planned = [Segment(i, i * 0.5, (i + 1) * 0.5, 2, "audio", None, None, 0.0, 1.0, i * 0.5, (i + 1) * 0.5)
               for i in range(3)]
    run = RunFolder(tmp_path / "r.run")
    run.create()
    run.write_storyboard(planned)
    assert _checked_storyboard(run, planned) == planned
    board = yaml.safe_load(run.storyboard_path.read_text())
    board["segments"][1]["end"] = 0.9
    board["segments"][2]["start"] = 0.9
    run.storyboard_path.write_text(yaml.safe_dump(board))
    with pytest.raises(InputError, match=r"storyboard\.yaml: segment 1 .*cannot be edited"):
        _checked_storyboard(run, planned)


def test_bookkeeping_per_task_does_not_grow_with_the_song(tmp_path, monkeypatch):
    """Recording task 300 writes as many bytes as recording task 1: nothing that grows is rewritten."""
    from metamusic import files, runfolder
    from metamusic.runfolder import RunFolder
    from metamusic.song.timeline import Segment

    written: list[int] = []
    real = files.replace_durably

    def spy(tmp, path):
        written.append(Path(tmp).stat().st_size)
        real(tmp, path)

    monkeypatch.setattr(files, "replace_durably", spy)
    monkeypatch.setattr(runfolder, "replace_durably", spy)
    run = RunFolder(tmp_path / "r.run")
    run.create()
    per_task = []
    for i in range(300):
        video = run.scratch / f"segment_{i:05d}.mp4"
        video.write_bytes(b"v" * 100)
        seg = Segment(i, i * 0.5, i * 0.5 + 0.5, 2, "audio", None, None, 0.0, 1.0, i * 0.5, i * 0.5 + 0.5)
        written.clear()
        run.record_task(f"segment_{i:05d}", files={f"segments/segment_{i:05d}.mp4": video},
                        states={f"state/after_{i:05d}.pt": {"z": torch.zeros(8), "optimiser": None,
                                                             "last_image": torch.zeros(3, dtype=torch.uint8)}},
                        stats={"steps": 2, "frames": 5, "seconds": 0.5}, segments=[seg])
        per_task.append(sum(written))
    assert max(per_task[1:]) - min(per_task[1:]) <= 64, (per_task[:3], per_task[-3:])
