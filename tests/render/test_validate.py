"""Every flag is checked before anything is read, loaded or written: exit 2, one line naming the flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers import model_flags

from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.validate import validate


class ModelsLoaded(Exception):
    """Raised instead of loading models: the flags passed every check."""


@pytest.fixture(autouse=True)
def no_models(monkeypatch):
    from metamusic import render

    def sentinel(*args, **kwargs):
        raise ModelsLoaded

    monkeypatch.setattr(render, "load_models", sentinel)


# (flags, text the one error line must contain: the flag and what it accepts)
BAD_FLAGS = {
    "augment code": (["-aug", "Ji", "Xx"], ["-aug Xx", "Ji Sh Gn"]),
    "no cut-outs": (["-cuts", "0"], ["-cuts 0", ">= 1"]),
    "cut power": (["-cutp", "0"], ["-cutp 0", "> 0"]),
    "learning rate": (["-lr", "-0.5"], ["-lr -0.5", "> 0"]),
    "crf": (["--crf", "60"], ["--crf 60", "0..51"]),
    "keyframe steps": (["--keyframes", "--keyframe_steps", "0"], ["--keyframe_steps 0", ">= 1"]),
    "batch keyframes": (["--keyframes", "--batch_keyframes", "0"], ["--batch_keyframes 0", ">= 1"]),
    "preview steps": (["--preview", "--preview_steps", "0"], ["--preview_steps 0", ">= 1"]),
    "keyframe every 0": (["--keyframes", "--keyframe_every", "0"], ["--keyframe_every 0", ">= 1, or line"]),
    "keyframe every negative": (["--keyframes", "--keyframe_every", "-2"], ["--keyframe_every -2", ">= 1"]),
    "keyframe every fraction": (["--keyframes", "--keyframe_every", "2.5"], ["--keyframe_every 2.5", "or line"]),
    "keyframe every word": (["--keyframes", "--keyframe_every", "bar"], ["--keyframe_every bar", "or line"]),
    "keyframe every line without lyrics": (["--keyframes", "--keyframe_every", "line"],
                                           ["--keyframe_every line", "-lyr"]),
    "keyframe every without keyframes": (["--keyframe_every", "4"], ["--keyframe_every 4", "add --keyframes"]),
    "caption size": (["--captions", "burn", "--caption_size", "1.5"], ["--caption_size 1.5", "(0, 1]"]),
    "noise seeds and weights": (["-nps", "1", "2", "-npw", "0.5"], ["-nps/-npw", "one -npw weight per -nps seed"]),
    "fps": (["--fps", "0"], ["--fps 0", "> 0"]),
    "ips": (["-ips", "-3"], ["-ips -3", ">= 0"]),
    "zoom start": (["-zs", "10"], ["-zs", "drop the flag"]),
    "zoom save every": (["-zse", "10"], ["-zse"]),
    "zoom scale": (["-zsc", "1.1"], ["-zsc"]),
    "zoom shift x": (["-zsx", "1"], ["-zsx"]),
    "zoom shift y": (["-zsy", "1"], ["-zsy"]),
    "input video fps": (["-ifps", "15"], ["-ifps"]),
}


def run_generate(argv: list[str], capsys) -> tuple[int, str]:
    from metamusic.cli import generate_main

    code = generate_main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flag_exits_2_with_one_line_and_writes_nothing(case, tiny_models, song_wav, tmp_path, capsys):
    flags, words = BAD_FLAGS[case]
    out = tmp_path / "out" / "v.mp4"
    argv = ["-ap", str(song_wav), *model_flags(tiny_models), "-gid", "cpu", "-s", "32", "32", "-sd", "1",
            "-o", str(out), *flags]
    code, err = run_generate(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "out").exists()  # no video, no run folder, not even their folder


def test_good_flags_pass_validation(tiny_models, song_wav, tmp_path, capsys):
    """The same command line with good values reaches the model loading."""
    argv = ["-ap", str(song_wav), *model_flags(tiny_models), "-gid", "cpu", "-s", "32", "32", "-sd", "1",
            "-o", str(tmp_path / "v.mp4"), "-aug", "Ji", "Sh", "-cuts", "2", "--crf", "51", "-nps", "1", "-npw", "1"]
    with pytest.raises(ModelsLoaded):
        run_generate(argv, capsys)


@pytest.mark.parametrize("yaml_text, words", [
    ('output:\n  fps: "30"\n', ["output.fps", "must be a number", "'30'"]),
    ("step:\n  cutn: 2.5\n", ["step.cutn", "must be an integer"]),
    ("keyframes:\n  enabled: yes please\n", ["keyframes.enabled", "true or false"]),
    ("output:\n  size: [64]\n", ["output.size", "list of 2 integers"]),
    ("music:\n  mode: mv2\n", ["--mode mv2", "m2v, fused, interpolate"]),
    ("num_cuts: -1\n", ["-cuts -1", ">= 1"]),
])
def test_bad_config_file_value_is_one_line_naming_it(yaml_text, words, tiny_models, song_wav, tmp_path, capsys):
    cfg = tmp_path / "my.yaml"
    cfg.write_text(yaml_text, encoding="utf-8")
    out = tmp_path / "out" / "v.mp4"
    argv = ["--config", str(cfg), "-ap", str(song_wav), *model_flags(tiny_models), "-gid", "cpu",
            "-s", "32", "32", "-o", str(out)]
    code, err = run_generate(argv, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "out").exists()


def test_validate_is_pure_and_accepts_the_defaults():
    validate(Config())
    config = Config()
    config.output.crf = 99
    with pytest.raises(InputError, match=r"^--crf 99"):
        validate(config)
    # The step's settings are checked when the step group is made (it is optim's StepConfig).
    with pytest.raises(InputError, match=r"^-aug Zz: unknown augment code; choose from Ji Sh"):
        dataclasses.replace(Config().step, augments=("Ji", "Zz"))


def test_validate_runs_before_the_seed_and_the_run_folder(tiny_models, tmp_path, monkeypatch):
    """Called in one place, first: a bad value is refused even where no file exists at all."""
    from metamusic import render

    config = Config()
    config.output.output = str(tmp_path / "nowhere" / "v.mp4")
    config.output.crf = 99
    monkeypatch.setattr(render, "check_inputs", lambda c: pytest.fail("validation must come first"))
    with pytest.raises(InputError, match="--crf 99"):
        render.generate(config)
    assert config.seed is None
    assert not Path(tmp_path / "nowhere").exists()
