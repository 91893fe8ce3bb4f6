"""Whisper checkpoints: the tiny file has the official layout and loads weights-only into whisper's model."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from metamusic.errors import CheckpointError
from metamusic.models.whisper_loader import (
    download_hint,
    load_whisper,
    resolve_whisper_path,
)

whisper = pytest.importorskip("whisper", reason="openai-whisper (the metamusic[lyrics] extra) is not installed")


def test_tiny_checkpoint_has_the_official_layout(tiny_models):
    from metamusic.tiny.whisper import TINY_DIMS

    state = torch.load(tiny_models["whisper"], weights_only=True)
    assert sorted(state) == ["dims", "model_state_dict"]
    assert state["dims"] == TINY_DIMS
    reference = whisper.model.Whisper(whisper.model.ModelDimensions(**TINY_DIMS)).state_dict()
    weights = state["model_state_dict"]
    assert sorted(weights) == sorted(reference)
    assert all(weights[k].shape == v.shape and weights[k].dtype == torch.float16 for k, v in reference.items())


def test_load_whisper_gives_an_eval_fp32_model_with_the_file_weights(tiny_models):
    model = load_whisper(tiny_models["whisper"])
    assert isinstance(model, whisper.model.Whisper)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    saved = torch.load(tiny_models["whisper"], weights_only=True)["model_state_dict"]
    key = "decoder.token_embedding.weight"
    assert model.state_dict()[key].dtype == torch.float32
    assert torch.equal(model.state_dict()[key], saved[key].float())


def test_missing_file_says_how_to_download_it(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_whisper(tmp_path / "whisper_medium.pt")
    assert str(info.value) == (f"{tmp_path / 'whisper_medium.pt'}: Whisper checkpoint not found; "
                               "download it with: bash download_models.sh whisper_medium")
    assert download_hint("somewhere/custom.pt").endswith("whisper_small")


def test_a_file_that_is_not_a_whisper_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not a Whisper checkpoint .*'dims' and 'model_state_dict'"):
        load_whisper(path)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"dims": Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError):
        load_whisper(path)
    assert not (tmp_path / "pwned").exists()


def test_names_resolve_in_the_checkpoints_folder():
    assert resolve_whisper_path("small", "ck") == Path("ck/whisper_small.pt")
    assert resolve_whisper_path("whisper_medium") == Path("checkpoints/whisper_medium.pt")
    assert resolve_whisper_path("models/mine.pt") == Path("models/mine.pt")


def test_python_m_metamusic_tiny_lists_the_whisper_checkpoint(tmp_path, capsys):
    import json

    from metamusic.tiny.__main__ import main

    assert main([str(tmp_path), "--seed", "1"]) == 0
    paths = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert paths["whisper"] == str(tmp_path / "whisper_tiny_random.pt")
    assert load_whisper(paths["whisper"]).dims.n_vocab == 51865
