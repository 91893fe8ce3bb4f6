"""Command-line flags: every flag in the README's table is accepted; config files round-trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metamusic.cli import FLAGS, parse_config
from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.render import output_paths

ROOT = Path(__file__).resolve().parents[1]

# A valid value for each flag that takes one (flags not listed here are switches).
VALUES = {
    "-s": ["64", "48"], "-nps": ["1", "2"], "-npw": ["0.5", "0.5"], "-aug": ["Ji", "Sh"],
    "--lyrics_format": ["lrc"], "--mode": ["fused"], "-cutm": ["nrupdated"], "-opt": ["AdamW"],
    "-in": ["gradient"], "--precision": ["fp32"], "--interpolation": ["lerp"], "--init_weight_target": ["start"],
    "--captions": ["burn"], "--caption_position": ["top"], "-gid": ["cpu"], "-cd": ["cpu"],
    "--keyframe_every": ["line"],
}
NUMERIC = {"-ips", "-sf", "--text_weight", "--audio_weight", "-vl", "-cpe", "-i", "-iw", "-lr", "-cuts",
           "-cutp", "--fps", "-ofps", "--crf", "-se", "-sd", "--keyframe_steps", "--batch_keyframes",
           "--caption_size", "--preview_steps", "--from_segment", "--ray_cpus_per_task", "--ray_workers"}
REFUSED = {"-zvid", "-vsd"}  # accepted by the parser, refused with a clear message
NEEDS_FILE = {"--config", "--resume"}


def readme_flags() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## All flags", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.findall(r"`(-[^`]+)`", row.split("|")[1])[0] for row in rows]


def test_readme_table_lists_every_flag():
    documented = set(readme_flags())
    assert len(documented) > 50
    for flag in FLAGS:
        if flag.help is not None and not flag.help.startswith("==SUPPRESS"):
            assert flag.names[0] in documented, f"{flag.names[0]} is not in the README's flag table"


@pytest.mark.parametrize("flag", readme_flags())
def test_each_readme_flag_is_accepted(flag, tmp_path):
    if flag in NEEDS_FILE:
        pytest.skip("covered by the config/resume tests")
    kwargs = next(f.kwargs for f in FLAGS if flag in f.names)
    if kwargs.get("action") == "store_true":
        argv = [flag]
    elif flag in VALUES:
        argv = [flag, *VALUES[flag]]
    elif flag in NUMERIC:
        argv = [flag, "3"]
    else:
        argv = [flag, str(tmp_path / "x")]
    if flag in REFUSED:
        with pytest.raises(InputError, match=flag):
            parse_config([*argv, "-gid", "cpu"], "generate.py", "", Config())
        return
    config, _ = parse_config([*argv, "-gid", "cpu"] if flag not in ("-gid", "-cd") else argv, "generate.py", "", Config())
    assert isinstance(config, Config)


def test_paper_command_line_parses(tmp_path):
    config, _ = parse_config(["-vid", "-o", "outputs/output.png", "-ap", "song.mp3", "-lyr", "lyrics/x.csv",
                              "-gid", "cpu", "-ips", "100"], "generate.py", "", Config())
    assert config.music.audio == "song.mp3" and config.music.ips == 100.0 and config.device == "cpu"
    video, run_dir = output_paths(config)
    assert video == Path("outputs/output.mp4") and run_dir == Path("outputs/output.run")


def test_faithful_steps_flag_sets_the_config():
    config, _ = parse_config(["--faithful_steps", "-gid", "cpu"], "generate.py", "", Config())
    assert config.music.faithful_steps is True
    assert parse_config(["-gid", "cpu"], "generate.py", "", Config())[0].music.faithful_steps is False


def test_output_mp4_is_exact_and_run_dir_override():
    config, _ = parse_config(["-o", "a/b/clip.mp4", "--run_dir", "elsewhere", "-gid", "cpu"], "g", "", Config())
    assert output_paths(config) == (Path("a/b/clip.mp4"), Path("elsewhere"))


def test_config_file_round_trips_and_flags_override_it(tmp_path):
    config, _ = parse_config(["-ap", "song.mp3", "-s", "64", "48", "-aug", "Ji", "Sh", "--theme", "ink wash",
                              "-sd", "5", "-gid", "cpu"], "g", "", Config())
    path = tmp_path / "run.yaml"
    config.save(path)
    again = Config.load(path)
    assert again.to_dict() == config.to_dict()
    loaded, _ = parse_config(["--config", str(path)], "g", "", Config())
    assert loaded.to_dict() == config.to_dict()
    override, _ = parse_config(["--config", str(path), "-sd", "9", "-s", "32", "32"], "g", "", Config())
    assert override.seed == 9 and override.output.size == (32, 32)
    assert override.prompts.theme == "ink wash" and override.step.augments == ("Ji", "Sh")


def test_step_group_is_the_optimisers_step_config(tmp_path):
    """One StepConfig: the config's step group, saved as YAML (augments a list) and loaded back."""
    import yaml

    from metamusic.optim.stepper import StepConfig

    config, _ = parse_config(["-aug", "Ji", "Sh", "-iw", "0.5", "--init_weight_target", "start", "-gid", "cpu"],
                             "g", "", Config())
    assert type(config.step) is StepConfig and config.step.init_weight_target == "start"
    assert Config().step == StepConfig() and StepConfig().precision == "auto"  # one set of defaults
    path = tmp_path / "config.yaml"
    config.save(path)
    assert yaml.safe_load(path.read_text())["step"]["augments"] == ["Ji", "Sh"]
    assert Config.load(path).step == config.step
    path.write_text("step:\n  cutn: '8'\n")
    with pytest.raises(InputError) as info:
        Config.load(path)
    assert "cutn" in str(info.value) and "\n" not in str(info.value)
    assert parse_config(["-gid", "cpu"], "g", "", Config())[0].step.init_weight_target == "zero"


def test_config_file_with_unknown_setting_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("step:\n  cutz: 3\n", encoding="utf-8")
    with pytest.raises(InputError, match="step.cutz"):
        parse_config(["--config", str(path)], "g", "", Config())


def test_bad_gpu_is_an_input_error():
    with pytest.raises(InputError, match="GPU 7 does not exist"):
        parse_config(["-gid", "7"], "g", "", Config())
    with pytest.raises(InputError, match="expected a GPU index"):
        parse_config(["-gid", "banana"], "g", "", Config())


def test_evaluate_accepts_the_model_flags_of_generate():
    from metamusic.evaluate import build_parser

    args = build_parser().parse_args(["v.mp4", "-ap", "s.wav", "-conf", "a.yaml", "-ckpt", "a.ckpt", "-m", "c.pt",
                                      "--wav2clip_checkpoint", "w.pt", "-gid", "cpu", "-o", "out"])
    assert args.clip_model == "c.pt" and args.wav2clip_checkpoint == "w.pt"


def test_ray_flags_choose_the_executor_and_stay_out_of_the_config():
    import sys

    from metamusic.cli import _run_options
    from metamusic.render.ray_executor import RayExecutor

    had_ray = "ray" in sys.modules
    config, args = parse_config(["--ray", "127.0.0.1:6379", "--ray_cpus_per_task", "2", "-gid", "cpu"], "g", "",
                                Config())
    executor = _run_options(args)["executor"]
    assert isinstance(executor, RayExecutor) and executor.cpus_per_task == 2 and executor.address == "127.0.0.1:6379"
    assert config.to_dict() == parse_config(["-gid", "cpu"], "g", "", Config())[0].to_dict()
    assert "executor" not in _run_options(parse_config(["-gid", "cpu"], "g", "", Config())[1])
    assert had_ray or "ray" not in sys.modules  # building the executor does not import Ray


@pytest.mark.parametrize("value,parsed", [("4", 4), ("line", "line"), ("-2", -2), ("2.5", "2.5")])
def test_keyframe_every_keeps_numbers_as_numbers(value, parsed):
    """validate.py judges the value; the flag only turns whole numbers into ints (YAML gives ints too)."""
    config, _ = parse_config(["--keyframes", "--keyframe_every", value, "-gid", "cpu"], "generate.py", "", Config())
    assert config.keyframes.every == parsed
