"""Every bad input is refused up front: one line naming the file and the problem, exit 2, no output.

The command-line entry points run in-process with model loading replaced by a sentinel, which
proves that each check happens before any model loads; two cases also run the real scripts.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from helpers import model_flags, run_script

SONG_SECONDS = 6.0


class ModelsLoaded(Exception):
    """Raised instead of loading models: the inputs passed every check."""


@pytest.fixture(autouse=True)
def no_models(monkeypatch):
    from metamusic import render

    def sentinel(*args, **kwargs):
        raise ModelsLoaded

    monkeypatch.setattr(render, "load_models", sentinel)


def ffmpeg(*args: str) -> None:
    from metamusic.media.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def tone(path: Path, rate: int, channels: int, seconds: float = 3.0) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=f=440:d={seconds}:r={rate}", "-ac", str(channels), str(path))
    return path


def truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# Each case: (flags to add or replace, given a work folder d, the song and the tiny models;
# the text that must name the file; the problem words). Flags given here replace the defaults.
Case = tuple[Callable[[Path, Path, dict], dict[str, list[str]]], Callable[[Path], str], str]


def _audio(make: Callable[[Path], Path]) -> Callable[[Path, Path, dict], dict[str, list[str]]]:
    return lambda d, song, tiny: {"-ap": [str(make(d))]}


def _lyrics(text: bytes | str | None) -> Callable[[Path, Path, dict], dict[str, list[str]]]:
    return lambda d, song, tiny: {"-lyr": [str(d / "lyr.csv" if text is None else write(d / "lyr.csv", text))]}


BAD: dict[str, Case] = {
    # audio
    "audio missing": (_audio(lambda d: d / "nope.wav"), lambda d: "nope.wav", "no such audio file"),
    "audio is a folder": (_audio(lambda d: (d / "song.wav").mkdir() or d / "song.wav"), lambda d: "song.wav",
                          "not a regular file"),
    "audio empty": (_audio(lambda d: write(d / "empty.mp3", b"")), lambda d: "empty.mp3", "empty"),
    "audio not audio": (_audio(lambda d: write(d / "notes.wav", "these are not samples\n" * 50)),
                        lambda d: "notes.wav", "not an audio file"),
    "audio is an image": (_audio(lambda d: _png(d / "cover.mp3")), lambda d: "cover.mp3", "no audio stream"),
    "audio truncated wav": (_audio(lambda d: truncated(tone(d / "cut.wav", 22050, 2))), lambda d: "cut.wav",
                            "truncated"),
    "audio truncated mp3": (_audio(lambda d: truncated(tone(d / "cut.mp3", 44100, 2))), lambda d: "cut.mp3",
                            "truncated"),
    "audio truncated flac": (_audio(lambda d: truncated(tone(d / "cut.flac", 48000, 1))), lambda d: "cut.flac",
                             "truncated"),
    # lyrics
    "lyrics missing": (_lyrics(None), lambda d: "lyr.csv", "no such lyrics file"),
    "lyrics empty": (_lyrics(""), lambda d: "lyr.csv", "empty"),
    "lyrics no timestamps": (_lyrics("hello there\nno times here\n"), lambda d: "lyr.csv", "format"),
    "lyrics decreasing": (_lyrics("timestamp,text\n00:03,b\n00:01,a\n"), lambda d: "lyr.csv", "earlier"),
    "lyrics duplicate": (_lyrics("timestamp,text\n00:01,a\n00:01,b\n"), lambda d: "lyr.csv", "duplicates"),
    "lyrics all past the end": (_lyrics("timestamp,text\n01:00,a\n01:10,b\n"), lambda d: "lyr.csv",
                                "after the song ends"),
    "lyrics undecodable": (_lyrics(b"timestamp,text\n00:01,caf\xe9 au lait\n"), lambda d: "lyr.csv", "not utf-8"),
    # size, models, device
    "size below minimum": (lambda d, s, t: {"-s": ["2", "2"]}, lambda d: "-s 2 2", "minimum"),
    "unknown clip name": (lambda d, s, t: {"-m": ["ViT-X/99"]}, lambda d: "ViT-X/99", "unknown clip model"),
    "vqgan checkpoint missing": (lambda d, s, t: {"-ckpt": [str(d / "vqgan_imagenet_f16_16384.ckpt")]},
                                 lambda d: "vqgan_imagenet_f16_16384.ckpt", "download_models.sh"),
    "vqgan config is html": (lambda d, s, t: {"-conf": [str(write(d / "model.yaml", "<!DOCTYPE html><html>"))]},
                             lambda d: "model.yaml", "html page"),
    "gpu 7": (lambda d, s, t: {"-gid": ["7"]}, lambda d: "-gid 7", "gpu 7 does not exist"),
    # output
    "output under a file": (lambda d, s, t: {"-o": [str(write(d / "somefile.txt", "x") / "out.mp4")]},
                            lambda d: "somefile.txt/out.mp4", "is a file, not a folder"),
    "output is a folder": (lambda d, s, t: {"-o": [str(_mkdir(d / "v.mp4"))]}, lambda d: "v.mp4",
                           "it is a folder"),
    "run folder under a file": (lambda d, s, t: {"--run_dir": [str(write(d / "notes.txt", "x") / "r.run")]},
                                lambda d: "notes.txt/r.run", "is a file, not a folder"),
}


def _png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, format="PNG")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def base_flags(song: Path, tiny: dict, out: Path) -> dict[str, list[str]]:
    flags = {"-ap": [str(song)], "-gid": ["cpu"], "-s": ["32", "32"], "--fps": ["10"], "-ips": ["4"],
             "-cuts": ["4"], "-sd": ["7"], "-o": [str(out)]}
    tiny_flags = model_flags(tiny)
    flags.update({tiny_flags[i]: [tiny_flags[i + 1]] for i in range(0, len(tiny_flags), 2)})
    return flags


def argv_of(flags: dict[str, list[str]]) -> list[str]:
    return [x for k, v in flags.items() for x in (k, *v)]


def main_of(name: str):
    from metamusic import cli

    return {"generate.py": cli.generate_main, "generate_interpolate.py": cli.interpolate_main}[name]


@pytest.mark.parametrize("script", ["generate.py", "generate_interpolate.py"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_naming_the_file(case, script, tiny_models, song_wav, tmp_path, capsys):
    make, names, words = BAD[case]
    out = tmp_path / "out" / "v.mp4"
    flags = base_flags(song_wav, tiny_models, out)
    flags.update(make(tmp_path, song_wav, tiny_models))
    code = main_of(script)(argv_of(flags))  # ModelsLoaded here means the bad input got through
    err = capsys.readouterr().err
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and names(tmp_path) in line and words in line.lower(), line
    assert "Traceback" not in err
    assert not out.exists() and not out.with_name("v.run").exists(), "something was written at the output path"


def test_unreadable_audio_exits_2(tiny_models, song_wav, tmp_path, capsys, monkeypatch):
    """Running as root, file modes cannot make a file unreadable: make the open itself fail."""
    import builtins

    from metamusic import cli
    from metamusic.song import audio

    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if Path(str(file)).name == "locked.wav":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    locked = tmp_path / "locked.wav"
    locked.write_bytes(song_wav.read_bytes())
    locked.chmod(0)
    monkeypatch.setattr(audio, "open", denying_open, raising=False)
    out = tmp_path / "v.mp4"
    flags = base_flags(locked, tiny_models, out)
    assert cli.generate_main(argv_of(flags)) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "locked.wav" in line and "permission denied" in line, line
    assert not out.exists()


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    specs = {"mp3": (44100, 2), "m4a": (48000, 1), "wav": (8000, 1), "flac": (96000, 6), "ogg": (22050, 2)}
    files = {ext: tone(d / f"song_{rate}_{ch}.{ext}", rate, ch) for ext, (rate, ch) in specs.items()}
    files["wav 8ch 192k"] = tone(d / "song_192000_8.wav", 192000, 8, seconds=1.0)
    return files


@pytest.mark.parametrize("fmt", ["mp3", "m4a", "wav", "flac", "ogg", "wav 8ch 192k"])
def test_every_format_rate_and_channel_count_is_accepted(fmt, formats, tiny_models, tmp_path):
    from metamusic.cli import parse_config
    from metamusic.config import Config
    from metamusic.render import check_inputs
    from metamusic.render.plan import song_timeline

    out = tmp_path / "v.mp4"
    config, _ = parse_config(argv_of(base_flags(formats[fmt], tiny_models, out)), "generate.py", "", Config())
    inputs = check_inputs(config)
    assert inputs.audio.sample_rate == 16000
    assert inputs.duration == pytest.approx(1.0 if "192k" in fmt else 3.0, abs=0.06)
    assert song_timeline(config, inputs)[0][-1].end == pytest.approx(inputs.duration)
    assert not out.exists() and not out.with_name("v.run").exists()  # checking writes nothing


def _checked(argv: list[str]):
    from metamusic.cli import parse_config
    from metamusic.config import Config
    from metamusic.render import check_inputs

    config, _ = parse_config(argv, "generate.py", "", Config())
    return check_inputs(config)


def test_lyrics_past_the_end_are_dropped_with_a_warning(tiny_models, song_wav, tmp_path, caplog):
    lyr = write(tmp_path / "lyr.csv", "timestamp,text\n00:01,early line\n00:09,too late\n")
    flags = base_flags(song_wav, tiny_models, tmp_path / "v.mp4")
    flags["-lyr"] = [str(lyr)]
    with caplog.at_level(logging.WARNING):
        inputs = _checked(argv_of(flags))
    assert [ln.text for ln in inputs.lyrics.lines] == ["early line"]
    assert any("lyr.csv" in r.getMessage() and "too late" in r.getMessage() and "dropped" in r.getMessage()
               for r in caplog.records), caplog.text


def test_size_not_a_multiple_of_the_factor_is_rounded_with_a_warning(tiny_models, song_wav, tmp_path, caplog):
    flags = base_flags(song_wav, tiny_models, tmp_path / "v.mp4")
    flags["-s"] = ["34", "42"]  # the tiny VQGAN downsamples by 4
    with caplog.at_level(logging.WARNING):
        inputs = _checked(argv_of(flags))
    assert inputs.size == (32, 40) and inputs.factor == 4
    assert "not a multiple of 4" in caplog.text and "32x40" in caplog.text


def test_too_little_disk_space_warns(tiny_models, song_wav, tmp_path, caplog, monkeypatch):
    import shutil
    from collections import namedtuple

    from metamusic import render

    usage = namedtuple("usage", "total used free")
    flags = argv_of(base_flags(song_wav, tiny_models, tmp_path / "out" / "v.mp4"))
    with caplog.at_level(logging.WARNING):
        _checked(flags)
    assert "MB free" not in caplog.text  # plenty of space: no warning

    seen = []

    def tiny_disk(path):
        seen.append(Path(path))
        return usage(10**9, 10**9, 1000)

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    with caplog.at_level(logging.WARNING):
        _checked(flags)
    assert "v.run: only 0 MB free" in caplog.text and "needs about" in caplog.text, caplog.text
    assert seen and all(p.exists() for p in seen)  # asked about a folder that exists
    # The estimate grows with the song, the frame size and the number of segment states.
    small = render.estimate_disk_bytes(6.0, 10, (32, 32), 8 * 8 * 8, 18)
    assert render.estimate_disk_bytes(6.0, 10, (64, 64), 8 * 16 * 16, 18) > small
    assert render.estimate_disk_bytes(12.0, 10, (32, 32), 8 * 8 * 8, 36) > small
    assert render.estimate_disk_bytes(6.0, 10, (32, 32), 8 * 8 * 8, 36) > small


@pytest.mark.parametrize("script,case", [("generate_interpolate.py", "output under a file"),
                                         ("generate.py", "audio truncated mp3")])
def test_real_scripts_exit_2(script, case, tiny_models, song_wav, tmp_path):
    make, names, words = BAD[case]
    out = tmp_path / "out" / "v.mp4"
    flags = base_flags(song_wav, tiny_models, out)
    flags.update(make(tmp_path, song_wav, tiny_models))
    proc = run_script(script, argv_of(flags), tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert names(tmp_path) in line and words in line.lower() and "Traceback" not in proc.stderr, line
    assert not out.exists() and not out.with_name("v.run").exists()
