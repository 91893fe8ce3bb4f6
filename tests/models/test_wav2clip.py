"""Wav2CLIP: spectrogram definition, framing, architecture/key layout, loader errors, tiny file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metamusic.errors import CheckpointError, InputError
from metamusic.models.wav2clip import (
    Wav2CLIP,
    frame_audio,
    power_spectrogram,
    standardise,
)
from metamusic.models.wav2clip_loader import load_wav2clip
from metamusic.tiny.wav2clip import random_wav2clip_state, write_tiny_wav2clip

SR = 16000


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    return write_tiny_wav2clip(tmp_path_factory.mktemp("w2c"), seed=0)["wav2clip"]


@pytest.fixture(scope="module")
def model(tiny_file) -> Wav2CLIP:
    return load_wav2clip(tiny_file)


def noise(n: int, seed: int, scale: float = 0.1) -> torch.Tensor:
    return scale * torch.randn(1, n, generator=torch.Generator().manual_seed(seed))  # (1, N)


def numpy_power_spectrogram(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Reference: reflect-pad n_fft//2, periodic Hann, rfft of each frame, |.|^2 -> (F, T)."""
    pad = n_fft // 2
    xp = np.pad(x.astype(np.float64), pad, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    n_frames = 1 + (len(xp) - n_fft) // hop
    frames = np.stack([xp[i * hop : i * hop + n_fft] * window for i in range(n_frames)])
    return (np.abs(np.fft.rfft(frames, axis=-1)) ** 2).T


# ---------------------------------------------------------------- spectrogram and framing


@pytest.mark.parametrize("n, n_fft, hop", [(16000, 512, 353), (4001, 512, 353), (1000, 64, 17)])
def test_power_spectrogram_matches_numpy_reference(n, n_fft, hop):
    audio = noise(n, seed=n)
    ours = power_spectrogram(audio, n_fft=n_fft, hop_length=hop)[0].double().numpy()
    ref = numpy_power_spectrogram(audio[0].numpy(), n_fft, hop)
    assert ours.shape == ref.shape == (n_fft // 2 + 1, 1 + n // hop)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.max())


def test_power_spectrogram_rejects_too_short_audio():
    with pytest.raises(InputError, match="samples"):
        power_spectrogram(torch.zeros(1, 200))


@pytest.mark.parametrize("n, frame, hop", [(48000, 16000, 16000), (50000, 16000, 8000), (7, 3, 2)])
def test_frame_audio_matches_index_definition(n, frame, hop):
    audio = torch.arange(2 * n, dtype=torch.float32).reshape(2, n)
    frames = frame_audio(audio, frame, hop)
    n_windows = 1 + (n - frame) // hop
    assert frames.shape == (2, n_windows, frame)
    for w in (0, n_windows - 1):
        assert torch.equal(frames[:, w], audio[:, w * hop : w * hop + frame])


def test_frame_audio_rejects_audio_shorter_than_a_frame():
    with pytest.raises(InputError, match="shorter than one frame"):
        frame_audio(torch.zeros(1, 100), 160, 160)


def test_standardise_uses_one_mean_and_unbiased_std_over_the_whole_tensor():
    x = torch.tensor([[1.0, 2.0], [3.0, 10.0]])
    expected = (x - 4.0) / (x.flatten().numpy().std(ddof=1) + 1e-9)
    torch.testing.assert_close(standardise(x), expected)


# ---------------------------------------------------------------- model, tiny file, layout


def test_tiny_file_loads_strictly_and_has_release_key_layout(tiny_file, model):
    state = torch.load(tiny_file, weights_only=True)
    assert type(state) is dict and all(isinstance(v, torch.Tensor) for v in state.values())
    assert set(state) == set(model.state_dict())
    assert "audio_encoder.spectrogram.window" in state
    assert state["audio_encoder.spectrogram.window"].shape == (512,)
    assert {k for k in state if k.startswith("audio_transform.")} == {
        "audio_transform.sequential.0.weight",
        "audio_transform.sequential.0.bias",
        "audio_transform.sequential.3.weight",
        "audio_transform.sequential.3.bias",
    }
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_parameter_count(model):
    encoder = sum(p.numel() for p in model.audio_encoder.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert encoder == 11_170_240  # ResNet-18 body with a 1-channel stem, no classifier
    assert total == encoder + 2 * (512 * 512 + 512)


def test_utterance_embedding_shape_and_values(model):
    with torch.no_grad():
        emb = model(noise(3 * SR, seed=1))
    assert emb.shape == (1, 512) and emb.dtype == torch.float32
    assert torch.isfinite(emb).all() and emb.std() > 0
    assert not torch.allclose(emb, model(noise(3 * SR, seed=2)))
    assert torch.equal(model(noise(3 * SR, seed=1)[0]), emb)  # (N,) is treated as one clip


def test_encoder_is_resnet18_layout_with_matching_keys(model):
    """Same keys and numbers as torchvision's ResNet-18 (1-channel stem, no fc) after the STFT."""
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.resnet18(weights=None)
    ref.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    ref.fc = torch.nn.Identity()
    body = {
        k: v for k, v in model.audio_encoder.state_dict().items() if not k.startswith("spectrogram")
    }
    ref.load_state_dict(body, strict=True)
    ref.eval()
    audio = noise(2 * SR, seed=3)
    x = standardise(torch.log(power_spectrogram(audio).unsqueeze(1) + 1e-7))
    with torch.no_grad():
        expected = model.audio_transform(ref(x))
    torch.testing.assert_close(model(audio), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n, frame, hop", [(3 * SR, SR, SR), (int(2.5 * SR), SR, SR // 2)])
def test_embed_frames_shape(model, n, frame, hop):
    out = model.embed_frames(noise(n, seed=4), frame_length=frame, hop_length=hop)
    assert out.shape == (1, 512, 1 + (n - frame) // hop)


def test_embed_frames_standardises_over_all_windows_together(model):
    """Original frame mode: every window of every clip goes through the encoder as ONE batch, so
    the log-spectrogram mean/std is shared; it equals forward() on the stacked windows, and is
    NOT the same as embedding each window alone when the windows differ in loudness."""
    audio = torch.cat([noise(SR, seed=5, scale=0.01), noise(SR, seed=6, scale=0.5)], dim=1)
    audio = torch.cat([audio, 0.3 * audio.flip(-1)])  # (2, 2 * SR): two clips, two windows each
    out = model.embed_frames(audio, frame_length=SR, hop_length=SR)  # (2, 512, 2)
    stacked = audio.reshape(4, SR)  # windows of clip 0, then clip 1
    joint = model(stacked)  # (4, 512)
    torch.testing.assert_close(out.transpose(1, 2).reshape(4, 512), joint)
    alone = torch.cat([model(w[None]) for w in stacked])
    assert not torch.allclose(joint, alone, atol=1e-3)
    # With a single window, the frame mode is exactly the utterance mode.
    single = model.embed_frames(audio[:1, :SR], frame_length=SR, hop_length=SR)
    torch.testing.assert_close(single[:, :, 0], model(audio[:1, :SR]))


# ---------------------------------------------------------------- loader errors


def _one_line_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_wav2clip(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file_names_file_and_download_hint(tmp_path):
    message = _one_line_error(tmp_path / "Wav2CLIP.pt")
    assert "not found" in message and "bash download_models.sh wav2clip" in message


def test_html_page_is_refused(tmp_path):
    path = tmp_path / "Wav2CLIP.pt"
    path.write_text("<!DOCTYPE html><html><body>Not Found</body></html>")
    assert "HTML" in _one_line_error(path)


def test_not_a_dict_is_refused(tmp_path):
    path = tmp_path / "Wav2CLIP.pt"
    torch.save([torch.zeros(3)], path)
    assert "expected a dict" in _one_line_error(path)


def test_dict_missing_keys_names_one_key(tmp_path):
    state = random_wav2clip_state(seed=1)
    del state["audio_transform.sequential.3.weight"]
    path = tmp_path / "Wav2CLIP.pt"
    torch.save(state, path)
    message = _one_line_error(path)
    assert "audio_transform.sequential.3.weight is missing" in message


def test_unrelated_dict_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    message = _one_line_error(path)
    assert "missing" in message and "more" in message


def test_shape_mismatch_names_the_key(tmp_path):
    state = random_wav2clip_state(seed=1)
    state["audio_encoder.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # an RGB image ResNet stem
    path = tmp_path / "Wav2CLIP.pt"
    torch.save(state, path)
    message = _one_line_error(path)
    assert "audio_encoder.conv1.weight" in message and "(64, 3, 7, 7)" in message
    assert "(64, 1, 7, 7)" in message


def test_unexpected_key_under_a_loaded_prefix_is_refused(tmp_path):
    state = random_wav2clip_state(seed=1)
    state["audio_encoder.fc.weight"] = torch.zeros(309, 512)  # an older classifier-head layout
    path = tmp_path / "Wav2CLIP.pt"
    torch.save(state, path)
    assert "unexpected key audio_encoder.fc.weight" in _one_line_error(path)


def test_keys_with_other_prefixes_are_ignored(tmp_path):
    state = random_wav2clip_state(seed=2)
    state["image_transform.sequential.0.weight"] = torch.zeros(512, 512)
    path = tmp_path / "Wav2CLIP.pt"
    torch.save(state, path)
    loaded = load_wav2clip(path)
    assert torch.equal(loaded.audio_encoder.conv1.weight, state["audio_encoder.conv1.weight"])


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, tiny_file):
    again = write_tiny_wav2clip(tmp_path / "a", seed=0)["wav2clip"]
    other = write_tiny_wav2clip(tmp_path / "b", seed=1)["wav2clip"]
    first = torch.load(tiny_file, weights_only=True)
    second = torch.load(again, weights_only=True)
    third = torch.load(other, weights_only=True)
    assert list(first) == list(second)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["audio_encoder.conv1.weight"], third["audio_encoder.conv1.weight"])
    bn_var = first["audio_encoder.layer1.0.bn1.running_var"]
    assert (bn_var > 0).all() and not torch.equal(bn_var, torch.ones_like(bn_var))
