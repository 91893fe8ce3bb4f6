"""experiments/run.py: the whole comparison on a short synthetic song with the tiny checkpoints."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import model_flags

from metamusic.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "experiments" / "run.py"
LYRICS = ("timestamp,text\n00:01,a red sunrise over the hills\n00:03,the deep blue ocean\n"
          "00:04,a green forest at night\n")
TINY_FLAGS = ["--size", "32", "32", "--fps", "10", "--budget-ips", "4", "--cuts", "4", "-gid", "cpu"]


def load_runner():
    """experiments/run.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("experiments_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return load_runner()


@pytest.fixture(scope="module")
def lyrics_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exp_lyrics") / "lyrics.csv"
    path.write_text(LYRICS, encoding="utf-8")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- pure parts


def test_keyframe_budget_matches_the_total(runner):
    assert runner.keyframe_budget([2, 2, 3, 1]) == 2  # 8 steps over 4 keyframes
    assert runner.keyframe_budget([5, 6]) == 6  # round(5.5) = 6 (banker's rounding of .5 to even)
    assert runner.keyframe_budget([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]) == 1
    assert runner.keyframe_budget([0, 0, 1]) == 1  # never zero steps per keyframe
    with pytest.raises(ValueError):
        runner.keyframe_budget([])


def test_steps_come_from_run_json_totals(runner, tmp_path):
    exp = runner.Experiment("m2v", "", [sys.executable, "generate.py"], tmp_path / "m2v")
    assert runner.steps_run(exp) is None  # no render yet
    exp.run_dir.mkdir(parents=True)
    (exp.run_dir / "run.json").write_text(json.dumps({"totals": {"steps": 37}}))
    assert runner.steps_run(exp) == 37


def test_bad_flags_are_one_line_input_errors(runner, tiny_models, song_wav, lyrics_csv, tmp_path):
    base = ["-ap", str(song_wav), "-lyr", str(lyrics_csv), "-o", str(tmp_path / "out"), *model_flags(tiny_models)]
    with pytest.raises(InputError, match="--only nonsense: unknown configuration"):
        runner.parse_options([*base, "--only", "m2v", "nonsense"])
    with pytest.raises(InputError, match="--budget-ips"):
        runner.parse_options([*base, "--budget-ips", "0"])
    with pytest.raises(InputError, match="the following arguments are required"):
        runner.parse_options(["-ap", str(song_wav)])
    # --extra may add flags, but not change what the runner holds equal across configurations
    with pytest.raises(InputError, match="seed"):
        runner.check_extra(runner.parse_options([*base, "--extra", "-sd 5"]))
    with pytest.raises(InputError, match="music.ips"):
        runner.check_extra(runner.parse_options([*base, "--extra", "--iterations_per_second 9"]))
    runner.check_extra(runner.parse_options([*base, "--extra", "-cutm original -lr 0.2"]))  # allowed
    opts = runner.parse_options([*base, "--only", "fused", "m2v", "--extra", "-lr 0.2"])
    assert opts.only == ("m2v", "fused")  # table order
    exps = runner.build_experiments(opts, keyframe_steps=3)
    assert [e.name for e in exps] == ["m2v", "fused"]
    fused = exps[1].argv
    assert fused[:2] == [sys.executable, str(ROOT / "generate.py")]
    assert fused[fused.index("-sd") + 1] == "0" and fused[fused.index("-ips") + 1] == "10"
    assert fused[fused.index("-o") + 1] == str(tmp_path / "out" / "fused" / "video.mp4")
    assert "-lr" in fused and fused[fused.index("--audio_weight") + 1] == "1"
    # --reuse recognises a render made on another device as the same render, but not other settings
    key = runner._reuse_key
    assert key(["py", "generate.py", "-gid", "0", "-sd", "0"]) == key(["py", "generate.py", "-gid", "cpu", "-sd", "0"])
    assert key(["py", "generate.py", "-sd", "0"]) != key(["py", "generate.py", "-sd", "1"])


def test_missing_song_exits_2_with_one_line(tiny_models, lyrics_csv, tmp_path):
    proc = subprocess.run([sys.executable, str(RUNNER), "-ap", str(tmp_path / "nope.wav"), "-lyr", str(lyrics_csv),
                           "-o", str(tmp_path / "out"), *model_flags(tiny_models)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope.wav" in lines[0], proc.stderr
    assert not (tmp_path / "out" / "results.md").exists()


def test_a_failing_configuration_is_reported_and_exits_1(runner, monkeypatch, tiny_models, song_wav, lyrics_csv,
                                                       tmp_path):
    fail = tmp_path / "fail.py"
    fail.write_text("import sys\nprint('error: the renderer broke on purpose', file=sys.stderr)\nsys.exit(3)\n")
    broken = tuple(c if c.name != "fused" else runner.Configuration("fused", str(fail), (), True, "broken")
                   for c in runner.CONFIGURATIONS)
    monkeypatch.setattr(runner, "CONFIGURATIONS", broken)
    out = tmp_path / "out"
    code = runner.main(["-ap", str(song_wav), "-lyr", str(lyrics_csv), "-o", str(out), *model_flags(tiny_models),
                        *TINY_FLAGS, "--only", "fused"])
    assert code == 1
    rows = read_csv(out / "results.csv")
    assert [r["configuration"] for r in rows] == ["fused"]
    assert rows[0]["status"] == "failed" and "broke on purpose" in rows[0]["note"]
    table = (out / "results.md").read_text(encoding="utf-8")
    assert "| `fused` | failed |" in table
    assert (out / "comparison.png").stat().st_size > 0


# --------------------------------------------------------------------------- the whole comparison


def test_runner_renders_scores_and_tabulates_every_configuration(runner, tiny_models, song_wav, lyrics_csv,
                                                                 tmp_path):
    out = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(RUNNER), "-ap", str(song_wav), "-lyr", str(lyrics_csv), "-o", str(out),
                           *model_flags(tiny_models), *TINY_FLAGS, "--seed", "0", "--jobs", "2"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    names = list(runner.NAMES)
    assert names == ["text_only", "audio_only", "m2v", "fused", "interpolate", "keyframes"]

    # results.csv: one row per configuration, in order; every one rendered and scored
    rows = read_csv(out / "results.csv")
    assert [r["configuration"] for r in rows] == names
    by = {r["configuration"]: r for r in rows}
    for name in names:
        r = by[name]
        assert r["status"] == "ok", r
        for key in ("text_alignment", "audio_alignment", "smoothness"):
            assert -1.0 <= float(r[key]) <= 1.0, (name, key, r[key])
        assert 0.0 <= float(r["pixel_change"]) <= 1.0
        assert abs(float(r["av_sync_difference"])) <= 0.1 + 1e-6 and r["av_in_sync"] == "true"
        assert int(r["steps"]) > 0 and float(r["render_seconds"]) > 0
        # each configuration's own evaluation: per-segment CSV, JSON summary, plot
        ev = out / name / "evaluation"
        assert len(read_csv(ev / "metrics.csv")) >= 4  # lead-in + 3 lyric intervals
        assert (ev / "summary.json").is_file() and (ev / "plot.png").stat().st_size > 0

    # Same budget: the beat-mode configurations spent what their storyboards planned, and the
    # keyframe render got round(m2v total steps / m2v segments) steps per keyframe.
    from metamusic.runfolder import RunFolder

    m2v = RunFolder(out / "m2v" / "video.run").read_storyboard()
    assert int(by["m2v"]["steps"]) == sum(s.steps for s in m2v)
    table = (out / "results.md").read_text(encoding="utf-8")
    assert f"--keyframe_steps {round(sum(s.steps for s in m2v) / len(m2v))} -o " in table  # the exact command
    kf_steps = round(sum(s.steps for s in m2v) / len(m2v))
    keyframes = RunFolder(out / "keyframes" / "video.run").read_storyboard()
    assert int(by["keyframes"]["steps"]) == len(keyframes) * kf_steps
    assert abs(int(by["keyframes"]["steps"]) - int(by["m2v"]["steps"])) <= len(m2v)
    # The step column is what the tasks ran: the sum of the run folder's task records.
    for name in names:
        tasks = json.loads((out / name / "video.run" / "run.json").read_text())["tasks"]
        assert int(by[name]["steps"]) == sum(s["steps"] for s in tasks.values()), name
    # ... and every configuration spends the same budget within 5%: lyric times near beats cut no
    # segment shorter than a frame, so no configuration pays extra steps for slivers (issue 19)
    # (text_only holds its image, with no steps, where no lyric is active: audio weight 0 leaves
    # those segments without a prompt, so its planned budget is compared, and what it ran is that
    # budget less the held segments' steps)
    planned = {name: sum(s.steps for s in RunFolder(out / name / "video.run").read_storyboard())
               for name in names if name != "keyframes"}
    assert max(planned.values()) <= 1.05 * min(planned.values()), planned
    held = sum(s.steps for s in RunFolder(out / "text_only" / "video.run").read_storyboard() if not s.text)
    assert int(by["text_only"]["steps"]) == planned["text_only"] - held

    # results.md: the table has one row per configuration and the status column
    table_rows = [ln for ln in table.splitlines() if ln.startswith("| `")]
    assert [ln.split("`")[1] for ln in table_rows] == names
    assert "| status |" in table

    from PIL import Image

    with Image.open(out / "comparison.png") as im:
        assert im.format == "PNG" and im.size[0] > 600 and im.size[1] > 600
