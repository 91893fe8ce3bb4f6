"""A sheet that cannot be written (full disk, read-only file) costs the picture, never the render."""

from __future__ import annotations

import errno
import logging

import metamusic.media.sheets as sheets
from metamusic.cli import generate_main
from metamusic.media.video import probe


def test_unwritable_pictures_warn_and_the_render_finishes(tiny_models, song_wav, tmp_path, monkeypatch, caplog):
    def no_space(fig, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sheets, "_save_png", no_space)
    out = tmp_path / "song.mp4"
    with caplog.at_level(logging.WARNING, logger="metamusic"):
        code = generate_main(["-ap", str(song_wav), "-conf", tiny_models["vqgan_config"], "-ckpt",
                              tiny_models["vqgan_checkpoint"], "-m", tiny_models["clip"], "--wav2clip_checkpoint",
                              tiny_models["wav2clip"], "-gid", "cpu", "-s", "32", "32", "--fps", "10", "-ips", "2",
                              "-cuts", "4", "-sd", "1", "--precision", "fp32", "-o", str(out)])
    assert code == 0
    info = probe(out)
    assert info.video_frames == 60 and info.has_audio  # the 6 s song at 10 fps, complete
    warnings = [r.getMessage() for r in caplog.records if "could not write a picture" in r.getMessage()]
    assert warnings and all("No space left on device" in w and "the render goes on" in w for w in warnings)
    assert any("timeline.png" in w for w in warnings) and any("storyboard_001.png" in w for w in warnings)
    run = tmp_path / "song.run"
    assert not (run / "timeline.png").exists() and not list(run.glob("storyboard_*.png"))
