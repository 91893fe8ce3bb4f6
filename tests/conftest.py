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
# One compute thread per process, set before anything imports torch or numba: renders run both in
# this process and in child processes (which inherit this), and CPU reductions are bit-exact only
# at the same thread count; under `pytest -n 2` two workers share the cores instead of fighting.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["NUMBA_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Put torch back to one thread after each test: Whisper's numba raises the count for the process,
    which left every later test oversubscribing the cores."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


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
