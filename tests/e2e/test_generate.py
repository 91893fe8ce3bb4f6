"""generate.py end to end on CPU with the tiny checkpoints: the video is as long as the song."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    FPS,
    LYRICS,
    SONG_SECONDS,
    assert_song_length,
    fast_flags,
    frame_hashes,
    model_flags,
    run_main,
    run_script,
)


@pytest.fixture(scope="module")
def lyrics_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lyr") / "lyrics.csv"
    path.write_text(LYRICS, encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["m2v", "fused", "audio-only"])
def test_generate_writes_a_video_as_long_as_the_song(mode, tiny_models, song_wav, lyrics_csv, tmp_path):
    out = tmp_path / "out" / "video.mp4"
    args = ["-vid", "-ap", str(song_wav), *model_flags(tiny_models), *fast_flags(), "-o", str(out)]
    if mode != "audio-only":
        args += ["-lyr", str(lyrics_csv), "--mode", mode]
    proc = run_main("generate.py", args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    assert_song_length(out, SONG_SECONDS)
    run_dir = out.with_name("video.run")
    assert (run_dir / "config.yaml").exists() and (run_dir / "storyboard.yaml").exists()
    assert sorted(run_dir.joinpath("segments").glob("segment_*.mp4")), "no segment videos"


def test_png_output_writes_mp4_beside_it(tiny_models, song_wav, tmp_path):
    """The real script, in its own process (the other renders here run its main in-process)."""
    out = tmp_path / "outputs" / "output.png"
    proc = run_script("generate.py", ["-vid", "-ap", str(song_wav), *model_flags(tiny_models), *fast_flags(),
                                      "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "outputs" / "output.mp4").exists()
    assert_song_length(tmp_path / "outputs" / "output.mp4", SONG_SECONDS)


def test_seed_reproduces_frames_and_other_seed_differs(tiny_models, song_wav, lyrics_csv, tmp_path):
    videos = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / name / "v.mp4"
        flags = fast_flags(seed=seed)
        proc = run_main("generate.py", ["-ap", str(song_wav), "-lyr", str(lyrics_csv), *model_flags(tiny_models),
                                        *flags, "-o", str(out)], tmp_path)
        assert proc.returncode == 0, proc.stderr
        videos[name] = frame_hashes(out)
    assert videos["a"] == videos["b"]
    assert videos["a"] != videos["c"]


def test_gumbel_vqgan_with_init_noise_renders(tiny_models, song_wav, tmp_path):
    from metamusic.tiny.vqgan import write_tiny_vqgan

    gumbel = write_tiny_vqgan(tmp_path / "gumbel", gumbel=True)
    flags = model_flags(tiny_models)
    flags[flags.index("-conf") + 1] = str(gumbel["vqgan_config"])
    flags[flags.index("-ckpt") + 1] = str(gumbel["vqgan_checkpoint"])
    out = tmp_path / "g.mp4"
    proc = run_main("generate.py", ["-ap", str(song_wav), *flags, *fast_flags(), "-in", "gradient", "-o", str(out)],
                    tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_song_length(out, SONG_SECONDS)


def test_plain_prompts_without_a_song_change_story_phrases(tiny_models, tmp_path):
    from metamusic.media.video import probe
    from metamusic.runfolder import RunFolder

    flags = [f for f in model_flags(tiny_models)]
    out = tmp_path / "plain.png"
    proc = run_main("generate.py", ["-p", "a red apple^a green pear:2|a blue sky", "-cpe", "5", "-i", "12",
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
    proc = run_main("generate.py", ["-ap", str(song_wav), *model_flags(tiny_models), *fast_flags(),
                                    "-ip", f"{image}:0.5", "-ii", str(image), "-iw", "0.1", "-nps", "1", "2",
                                    "-npw", "0.3", "0.3", "-p", "watercolor:0.5", "-opt", "DiffGrad",
                                    "-cutm", "nrupdated", "-aug", "Ji", "Sh", "Gn", "-ofps", "20",
                                    "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    from metamusic.media.video import probe

    info = probe(out)
    assert info.video_frames == round(SONG_SECONDS * 20) and info.has_audio
    assert abs(info.duration - SONG_SECONDS) <= 1 / 20
