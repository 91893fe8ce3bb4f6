"""generate.py end to end on CPU with the tiny checkpoints: the video is as long as the song."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FPS = 10
SONG_SECONDS = 6.0

LYRICS = "timestamp,text\n00:01,a red sunrise over the hills\n00:03,the deep blue ocean\n00:04,a green forest at night\n"


def model_flags(tiny: dict[str, str]) -> list[str]:
    return ["-conf", tiny["vqgan_config"], "-ckpt", tiny["vqgan_checkpoint"], "-m", tiny["clip"],
            "--wav2clip_checkpoint", tiny["wav2clip"]]


def fast_flags() -> list[str]:
    return ["-gid", "cpu", "-s", "32", "32", "--fps", str(FPS), "-ips", "4", "-cuts", "4", "-sd", "7", "--precision", "fp32"]


def run_script(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def lyrics_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lyr") / "lyrics.csv"
    path.write_text(LYRICS, encoding="utf-8")
    return path


def assert_song_length(video: Path, duration: float) -> None:
    from metamusic.media.video import probe

    info = probe(video)
    assert info.has_audio, f"{video} has no audio stream"
    assert abs(info.video_frames - round(duration * FPS)) <= 1, info
    assert abs(info.duration - duration) <= 1.0 / FPS, info


def frame_hashes(video: Path) -> list[str]:
    from metamusic.media.video import read_frames

    return [hashlib.sha256(f.tobytes()).hexdigest() for f in read_frames(video)]


@pytest.mark.parametrize("mode", ["m2v", "fused", "audio-only"])
def test_generate_writes_a_video_as_long_as_the_song(mode, tiny_models, song_wav, lyrics_csv, tmp_path):
    out = tmp_path / "out" / "video.mp4"
    args = ["-vid", "-ap", str(song_wav), *model_flags(tiny_models), *fast_flags(), "-o", str(out)]
    if mode != "audio-only":
        args += ["-lyr", str(lyrics_csv), "--mode", mode]
    proc = run_script("generate.py", args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    assert_song_length(out, SONG_SECONDS)
    run_dir = out.with_name("video.run")
    assert (run_dir / "config.yaml").exists() and (run_dir / "storyboard.yaml").exists()
    assert sorted(run_dir.joinpath("segments").glob("segment_*.mp4")), "no segment videos"


def test_png_output_writes_mp4_beside_it(tiny_models, song_wav, tmp_path):
    out = tmp_path / "outputs" / "output.png"
    proc = run_script("generate.py", ["-vid", "-ap", str(song_wav), *model_flags(tiny_models), *fast_flags(),
                                      "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "outputs" / "output.mp4").exists()


def test_seed_reproduces_frames_and_other_seed_differs(tiny_models, song_wav, lyrics_csv, tmp_path):
    videos = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / name / "v.mp4"
        flags = [f if f != "7" else seed for f in fast_flags()]
        proc = run_script("generate.py", ["-ap", str(song_wav), "-lyr", str(lyrics_csv), *model_flags(tiny_models),
                                          *flags, "-o", str(out)], tmp_path)
        assert proc.returncode == 0, proc.stderr
        videos[name] = frame_hashes(out)
    assert videos["a"] == videos["b"]
    assert videos["a"] != videos["c"]


BAD_AUDIO = {
    "missing": (lambda d: d / "nope.wav", "no such audio file"),
    "empty": (lambda d: _write(d / "empty.wav", b""), "empty"),
    "not audio": (lambda d: _write(d / "notes.wav", b"these are not samples\n" * 50), "not an audio file"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(BAD_AUDIO))
def test_bad_audio_exits_2_naming_the_file(case, tiny_models, tmp_path):
    make, words = BAD_AUDIO[case]
    audio = make(tmp_path)
    out = tmp_path / "o" / "v.mp4"
    proc = run_script("generate.py", ["-ap", str(audio), *model_flags(tiny_models), *fast_flags(), "-o", str(out)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert str(audio.name) in line and words in line, line
    assert "Traceback" not in proc.stderr
    assert not out.exists()


BAD_LYRICS = {
    "missing": (None, "no such lyrics file"),
    "empty": ("", "empty"),
    "no timestamps": ("hello there\nno times here\n", "format"),
    "decreasing": ("timestamp,text\n00:03,b\n00:01,a\n", "earlier"),
}


@pytest.mark.parametrize("case", sorted(BAD_LYRICS))
def test_bad_lyrics_exit_2_naming_the_file(case, tiny_models, song_wav, tmp_path):
    text, words = BAD_LYRICS[case]
    lyr = tmp_path / "lyr.csv"
    if text is not None:
        lyr.write_text(text, encoding="utf-8")
    out = tmp_path / "o" / "v.mp4"
    proc = run_script("generate.py", ["-ap", str(song_wav), "-lyr", str(lyr), *model_flags(tiny_models),
                                      *fast_flags(), "-o", str(out)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "lyr.csv" in line and words in line.lower(), line
    assert not out.exists()


def test_missing_gpu_and_tiny_size_exit_2(tiny_models, song_wav, tmp_path):
    base = ["-ap", str(song_wav), *model_flags(tiny_models), "-o", str(tmp_path / "v.mp4")]
    proc = run_script("generate.py", [*base, "-gid", "7", "-s", "32", "32"], tmp_path)
    assert proc.returncode == 2 and "GPU 7 does not exist" in proc.stderr, proc.stderr
    proc = run_script("generate.py", [*base, "-gid", "cpu", "-s", "2", "2"], tmp_path)
    assert proc.returncode == 2 and "minimum" in proc.stderr, proc.stderr
    assert not (tmp_path / "v.mp4").exists()


def test_missing_checkpoint_names_file_and_download(tiny_models, song_wav, tmp_path):
    flags = model_flags(tiny_models)
    flags[flags.index("-ckpt") + 1] = str(tmp_path / "vqgan_imagenet_f16_16384.ckpt")
    proc = run_script("generate.py", ["-ap", str(song_wav), *flags, *fast_flags(), "-o", str(tmp_path / "v.mp4")], tmp_path)
    assert proc.returncode == 2
    assert "vqgan_imagenet_f16_16384.ckpt" in proc.stderr and "download_models.sh" in proc.stderr


def test_gumbel_vqgan_with_init_noise_renders(tiny_models, song_wav, tmp_path):
    from metamusic.tiny.vqgan import write_tiny_vqgan

    gumbel = write_tiny_vqgan(tmp_path / "gumbel", gumbel=True)
    flags = model_flags(tiny_models)
    flags[flags.index("-conf") + 1] = str(gumbel["vqgan_config"])
    flags[flags.index("-ckpt") + 1] = str(gumbel["vqgan_checkpoint"])
    out = tmp_path / "g.mp4"
    proc = run_script("generate.py", ["-ap", str(song_wav), *flags, *fast_flags(), "-in", "gradient", "-o", str(out)],
                      tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_song_length(out, SONG_SECONDS)


def test_plain_prompts_without_a_song_change_story_phrases(tiny_models, tmp_path):
    from metamusic.media.video import probe
    from metamusic.runfolder import RunFolder

    flags = [f for f in model_flags(tiny_models)]
    out = tmp_path / "plain.png"
    proc = run_script("generate.py", ["-p", "a red apple^a green pear:2|a blue sky", "-cpe", "5", "-i", "12",
                                      *flags[:6], "-gid", "cpu", "-s", "32", "32", "--fps", str(FPS), "-cuts", "4",
                                      "-sd", "1", "--precision", "fp32", "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and probe(tmp_path / "plain.mp4").video_frames == 12
    texts = [s.text for s in RunFolder(tmp_path / "plain.run").read_storyboard()]
    assert texts == ["a red apple", "a green pear:2|a blue sky", "a red apple"]


def test_vqgan_clip_flags_and_motion_interpolated_output(tiny_models, song_wav, tmp_path):
    """-ip, -ii, -iw, -nps/-npw, -p with a song, -opt, -cutm, -aug and -ofps together."""
    from PIL import Image

    image = tmp_path / "start.png"
    Image.new("RGB", (40, 30), (200, 80, 20)).save(image)
    out = tmp_path / "v.mp4"
    proc = run_script("generate.py", ["-ap", str(song_wav), *model_flags(tiny_models), *fast_flags(),
                                      "-ip", f"{image}:0.5", "-ii", str(image), "-iw", "0.1", "-nps", "1", "2",
                                      "-npw", "0.3", "0.3", "-p", "watercolor:0.5", "-opt", "DiffGrad",
                                      "-cutm", "nrupdated", "-aug", "Ji", "Sh", "Gn", "-ofps", "20",
                                      "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    from metamusic.media.video import probe

    info = probe(out)
    assert info.video_frames == round(SONG_SECONDS * 20) and info.has_audio
    assert abs(info.duration - SONG_SECONDS) <= 1 / 20
