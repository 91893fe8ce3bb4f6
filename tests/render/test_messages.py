"""What a user reads: the download hint names the CLIP asked for, long lyrics name their line,
run.json records every model file."""

from __future__ import annotations

import logging

import pytest

from metamusic.config import Config


class ModelsLoaded(Exception):
    pass


@pytest.fixture(autouse=True)
def no_models(monkeypatch):
    from metamusic import render

    def sentinel(*args, **kwargs):
        raise ModelsLoaded

    monkeypatch.setattr(render, "load_models", sentinel)


def argv(tiny: dict[str, str], song, out, *extra: str) -> list[str]:
    return ["-ap", str(song), "-conf", tiny["vqgan_config"], "-ckpt", tiny["vqgan_checkpoint"], "-m", tiny["clip"],
            "--wav2clip_checkpoint", tiny["wav2clip"], "-gid", "cpu", "-s", "32", "32", "-sd", "1",
            "-o", str(out), *extra]


@pytest.mark.parametrize("name, target", [("ViT-B/16", "clip_vit_b16"), ("RN50", "clip_rn50"),
                                          ("ViT-B/32", "clip_vit_b32")])
def test_missing_clip_hint_names_the_model_asked_for(name, target, tiny_models, song_wav, tmp_path, capsys):
    from metamusic.cli import generate_main

    empty = tmp_path / "checkpoints"
    empty.mkdir()
    code = generate_main(argv(tiny_models, song_wav, tmp_path / "v.mp4", "-m", name, "--checkpoints_dir", str(empty)))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"bash download_models.sh {target}" in err
    others = {"clip_vit_b16", "clip_rn50", "clip_vit_b32"} - {target}
    assert not any(o in err for o in others), err


def test_long_lyric_warning_names_its_line(tiny_models, song_wav, tmp_path, caplog):
    from metamusic.cli import generate_main

    lyrics = tmp_path / "lyr.csv"
    long_line = " ".join(["a lantern drifting over the dark water"] * 12)
    lyrics.write_text(f"timestamp,text\n00:01,short and sweet\n00:03,{long_line}\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="metamusic"):
        with pytest.raises(ModelsLoaded):
            generate_main(argv(tiny_models, song_wav, tmp_path / "v.mp4", "-lyr", str(lyrics)))
    warnings = [r.getMessage() for r in caplog.records if "tokens long" in r.getMessage()]
    assert len(warnings) == 1 and f"{lyrics}:3:" in warnings[0], warnings


def test_theme_counts_toward_the_prompt_length():
    from metamusic.models.clip import token_count
    from metamusic.render import compose_prompt
    from metamusic.song.lyrics import parse_lyrics, warn_long_lines

    lyrics = parse_lyrics("timestamp,text\n00:01,a small boat\n00:02,the tide\n", source="x.csv")
    assert warn_long_lines(lyrics, token_count) == []
    theme = ", ".join(["oil painting by a forgotten master of the northern school"] * 8)
    assert warn_long_lines(lyrics, token_count, compose=lambda t: compose_prompt(t, None, theme)) == [2, 3]


def test_run_json_records_the_clip_file(tiny_models):
    from metamusic.download import sha256_of
    from metamusic.render import run_info

    config = Config()
    config.models.vqgan_config = tiny_models["vqgan_config"]
    config.models.vqgan_checkpoint = tiny_models["vqgan_checkpoint"]
    config.models.clip_model = tiny_models["clip"]
    config.models.wav2clip_checkpoint = tiny_models["wav2clip"]
    files = run_info(config)["model_files"]
    assert set(files) == {"vqgan_config", "vqgan_checkpoint", "clip", "wav2clip_checkpoint"}
    from pathlib import Path

    clip = Path(tiny_models["clip"])
    assert files["clip"] == {"path": str(clip), "size": clip.stat().st_size, "sha256": sha256_of(clip)}
