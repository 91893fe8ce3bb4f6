"""A full-size ``Wav2CLIP.pt`` with random weights in the release format, for tests and demos."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from metamusic.models.wav2clip import Wav2CLIP, periodic_hann


def random_wav2clip_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Flat ``audio_encoder.* / audio_transform.*`` dict of seeded random tensors (BN stats too)."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, ref in Wav2CLIP().state_dict().items():
        name = key.rsplit(".", 1)[-1]
        shape = ref.shape
        if key.endswith("spectrogram.window"):
            value = periodic_hann(shape[0])  # the release stores the real Hann window
        elif name == "num_batches_tracked":
            value = torch.tensor(int(torch.randint(1000, 100000, (), generator=gen)))
        elif name == "running_mean":
            value = 0.1 * torch.randn(shape, generator=gen)
        elif name == "running_var":
            value = 0.5 + torch.rand(shape, generator=gen)
        elif ref.dim() == 1 and name == "weight":  # BatchNorm scale
            value = 1.0 + 0.02 * torch.randn(shape, generator=gen)
        elif name == "bias":
            value = 0.01 * torch.randn(shape, generator=gen)
        elif ref.dim() == 4:  # conv: He normal on fan-out, as the original initialises
            fan_out = shape[0] * shape[2] * shape[3]
            value = math.sqrt(2.0 / fan_out) * torch.randn(shape, generator=gen)
        elif ref.dim() == 2:  # linear
            value = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
        else:
            raise AssertionError(f"no random initialiser for {key}")
        state[key] = value.to(ref.dtype).contiguous()
    return state


def write_tiny_wav2clip(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``directory/Wav2CLIP.pt`` (random weights); return ``{"wav2clip": path}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "Wav2CLIP.pt"
    torch.save(random_wav2clip_state(seed), path)
    return {"wav2clip": path}
