"""The previous segment's last frame as a first-step image prompt: with a song (Music2Video), never
in plain VQGAN-CLIP runs whose phrases change with -cpe (VQGAN-CLIP adds no such prompt)."""

from __future__ import annotations

import pytest

import metamusic.render.frame_mode as frame_mode
from metamusic.cli import generate_main
from metamusic.runfolder import RunFolder


def _flags(tiny: dict[str, str]) -> list[str]:
    return ["-conf", tiny["vqgan_config"], "-ckpt", tiny["vqgan_checkpoint"], "-m", tiny["clip"],
            "--wav2clip_checkpoint", tiny["wav2clip"], "-gid", "cpu", "-s", "32", "32", "--fps", "10",
            "-cuts", "4", "-sd", "3", "--precision", "fp32"]


@pytest.fixture
def image_prompts(monkeypatch) -> list[int]:
    """Counts the previous-frame prompts the frame-mode task embeds (the real function still runs)."""
    calls: list[int] = []
    real = frame_mode.embed_image_prompt

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(frame_mode, "embed_image_prompt", counting)
    return calls


def test_plain_prompt_runs_change_phrases_without_a_previous_frame_prompt(tiny_models, tmp_path, image_prompts):
    out = tmp_path / "plain.mp4"
    assert generate_main(["-p", "a red apple^a green pear^a blue sky", "-cpe", "4", "-i", "12",
                          *_flags(tiny_models), "-o", str(out)]) == 0
    segments = RunFolder(tmp_path / "plain.run").read_storyboard()
    assert [s.text for s in segments] == ["a red apple", "a green pear", "a blue sky"]
    assert image_prompts == []


def test_song_runs_prompt_each_segment_after_the_first_with_the_previous_frame(tiny_models, song_wav, tmp_path,
                                                                                 image_prompts):
    out = tmp_path / "song.mp4"
    assert generate_main(["-ap", str(song_wav), "-ips", "2", *_flags(tiny_models), "-o", str(out)]) == 0
    segments = RunFolder(tmp_path / "song.run").read_storyboard()
    assert len(segments) > 2
    assert len(image_prompts) == len(segments) - 1
