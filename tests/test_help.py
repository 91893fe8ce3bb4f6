"""--help a person can scan, in the same style for every command; --config accepts what users type."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from metamusic.cli import parse_config
from metamusic.config import Config
from metamusic.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("input:", "prompts:", "optimisation:", "keyframes:", "video and captions:", "run folder:",
            "models and device:")


def help_of(*cmd: str) -> str:
    proc = subprocess.run([sys.executable, *cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def generate_help() -> str:
    return help_of("generate.py")


def test_generate_help_has_sections_examples_and_no_noise(generate_help):
    text = generate_help
    assert text.startswith("usage: generate.py ")
    positions = [text.index("\n" + s + "\n") for s in SECTIONS]
    assert positions == sorted(positions)
    assert "\nexamples:\n" in text and text.index("\nexamples:\n") > positions[-1]
    assert "(default: False)" not in text and "(default: None)" not in text
    assert not re.search(r"\(default: [^)]*\)[^\n]*\(default:", text)  # never two defaults for one flag
    assert "512 512" in text and "256 256" in text  # the automatic -s explained
    flat = " ".join(text.split())
    assert "(default: 30)" in flat and "(default: Af Pe Ji Er)" in flat  # as typed, not 30.0 / ['Af', ...]


def test_interpolate_help_omits_the_flags_it_ignores():
    text = help_of("generate_interpolate.py")
    assert text.startswith("usage: generate_interpolate.py ")
    for flag in ("--mode", "--text_weight", "--audio_weight"):
        assert flag not in text
    assert "\nexamples:\n" in text and "\nrun folder:\n" in text


@pytest.mark.parametrize("cmd, usage", [
    (["combine_mp4.py"], "usage: combine_mp4.py "),
    (["evaluate.py"], "usage: evaluate.py "),
    (["-m", "metamusic.download"], "usage: download_models.sh "),
])
def test_every_command_has_the_same_style(cmd, usage):
    text = help_of(*cmd)
    assert text.startswith(usage)
    assert "\nexamples:\n" in text
    assert "(default: False)" not in text and "(default: None)" not in text


def test_usage_names_an_installed_entry_point(monkeypatch):
    from metamusic.helpformat import command_name

    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/metamusic-generate", "--help"])
    assert command_name("generate.py") == "metamusic-generate"
    monkeypatch.setattr(sys, "argv", ["/x/metamusic/download.py"])
    assert command_name("download_models.sh") == "download_models.sh"


def test_config_file_takes_the_flags_long_names(tmp_path):
    path = tmp_path / "song.yaml"
    path.write_text("audio_prompt: song.mp3\nlyrics: lyrics/song.srt\nnum_cuts: 8\nsize: [64, 48]\n"
                    "augments: [Ji, Sh]\nseed: 3\nstep:\n  lr: 0.2\n", encoding="utf-8")
    config, _ = parse_config(["--config", str(path), "-gid", "cpu"], "g", "", Config())
    assert config.music.audio == "song.mp3" and config.music.lyrics == "lyrics/song.srt"
    assert config.step.cutn == 8 and config.step.lr == 0.2 and config.step.augments == ("Ji", "Sh")
    assert config.output.size == (64, 48) and config.seed == 3


@pytest.mark.parametrize("text, suggestion", [
    ("num_cut: 8\n", "num_cuts"),
    ("audio_promt: song.mp3\n", "audio_prompt"),
    ("output:\n  fsp: 30\n", "output.fps"),
])
def test_unknown_config_key_lists_the_nearest_names(text, suggestion, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match="did you mean") as err:
        parse_config(["--config", str(path), "-gid", "cpu"], "g", "", Config())
    assert suggestion in str(err.value) and str(path) in str(err.value)


def test_config_long_name_and_nested_setting_cannot_disagree(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("num_cuts: 8\nstep:\n  cutn: 4\n", encoding="utf-8")
    with pytest.raises(InputError, match="keep one"):
        parse_config(["--config", str(path), "-gid", "cpu"], "g", "", Config())


def test_trust_torchscript_needs_the_flag_on_the_command_line(tmp_path):
    path = tmp_path / "trusting.yaml"
    path.write_text("models:\n  trust_torchscript: true\n", encoding="utf-8")
    config, _ = parse_config(["--config", str(path), "-gid", "cpu"], "g", "", Config())
    assert config.models.trust_torchscript is False
    config, _ = parse_config(["--config", str(path), "-gid", "cpu", "--trust_torchscript"], "g", "", Config())
    assert config.models.trust_torchscript is True
    run = tmp_path / "x.run"
    run.mkdir()
    (run / "config.yaml").write_text("models:\n  trust_torchscript: true\n", encoding="utf-8")
    config, _ = parse_config(["--resume", str(run), "-gid", "cpu"], "g", "", Config())
    assert config.models.trust_torchscript is False
