"""A tiny random Whisper checkpoint in the official file format (``{"dims", "model_state_dict"}``).

The real vocabulary size (51865, multilingual) keeps Whisper's own tokenizer working; the
network is one or two layers of width 64 and a 40-token text context (so decoding stops
after 20 tokens per 30 s window). Weights are seeded and stored in fp16 like the official files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metamusic.files import atomic_path

TINY_DIMS = {
    "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 2, "n_audio_layer": 1,
    "n_vocab": 51865, "n_text_ctx": 40, "n_text_state": 64, "n_text_head": 2, "n_text_layer": 2,
}


def random_whisper_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random weights with the shapes of ``whisper.model.Whisper(TINY_DIMS)`` (fp16)."""
    from metamusic.models.whisper_loader import import_whisper

    whisper = import_whisper()
    reference = whisper.model.Whisper(whisper.model.ModelDimensions(**TINY_DIMS)).state_dict()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, ref in reference.items():
        if key.endswith("positional_embedding") and key.startswith("encoder."):
            value = ref.clone()  # the encoder's sinusoids are fixed, as in the official files
        elif key.endswith(("ln.weight", "ln_post.weight")):  # LayerNorm scales
            value = torch.ones_like(ref)
        elif ref.dim() == 1:
            value = 0.02 * torch.randn(ref.shape, generator=gen)
        else:
            value = torch.randn(ref.shape, generator=gen) / ref.shape[-1] ** 0.5
        state[key] = value.to(torch.float16).contiguous()
    return state


def write_tiny_whisper(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``directory/whisper_tiny_random.pt``; return ``{"whisper": path}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "whisper_tiny_random.pt"
    with atomic_path(path) as tmp:
        torch.save({"dims": dict(TINY_DIMS), "model_state_dict": random_whisper_state(seed)}, tmp)
    return {"whisper": path}
