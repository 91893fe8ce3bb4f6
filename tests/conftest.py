"""Shared fixtures: tiny official-format checkpoints and a short synthetic song, made once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Keep the suite polite on small CI machines and independent of the user's network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Paths of the tiny checkpoints written by ``python -m metamusic.tiny``."""
    from metamusic.tiny import write_all

    return write_all(tmp_path_factory.mktemp("tiny_models"), seed=0)


@pytest.fixture(scope="session")
def song_wav(tmp_path_factory) -> Path:
    """A 6 s synthetic song with clear beats at 120 bpm, as a 22.05 kHz wav."""
    from metamusic.song.audio import synth_song, write_wav

    path = tmp_path_factory.mktemp("song") / "song.wav"
    mono = synth_song(6.0, sample_rate=22050, bpm=120, seed=1)
    write_wav(path, mono, 22050)
    return path
