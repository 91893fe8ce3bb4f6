"""Tiny random CLIP checkpoints in the official OpenAI formats, for tests and smoke runs.

``write_tiny_clip`` writes the same weights twice: as a TorchScript archive laid out like
OpenAI's ``ViT-B-32.pt`` (same state-dict key set: no ``attn_mask``, plus the
``input_resolution`` / ``context_length`` / ``vocab_size`` scalars; the weights open_clip and
OpenAI keep in fp16 are stored in fp16) and as a plain state-dict ``.pt``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from metamusic.models.clip import ClipArchitecture, build_clip

TINY_CLIP = ClipArchitecture(
    embed_dim=512,  # CLIP ViT-B/32 space: Wav2CLIP embeddings (512-d) must match
    image_size=32,
    vision_layers=2,
    vision_width=64,
    vision_patch_size=16,
    vision_mlp_ratio=4.0,
    context_length=77,  # as OpenAI's
    vocab_size=49408,  # as OpenAI's (EOT id 49407)
    text_width=64,
    text_heads=1,
    text_layers=2,
    text_mlp_ratio=4.0,
)


def _random_value(key: str, like: Tensor, gen: torch.Generator) -> Tensor:
    """Draw a plausible random value for one CLIP weight (scale by fan-in, LayerNorms near 1)."""
    noise = torch.randn(like.shape, generator=gen)
    if key == "logit_scale":
        return torch.full(like.shape, math.log(1 / 0.07))
    if key in ("token_embedding.weight", "positional_embedding", "visual.positional_embedding"):
        return 0.02 * noise
    if key in ("text_projection", "visual.proj", "visual.class_embedding"):
        return noise / math.sqrt(like.shape[0])
    if ".ln_" in key or key.startswith(("ln_final", "visual.ln_")):
        return 1.0 + 0.1 * noise if key.endswith("weight") else 0.1 * noise
    if like.ndim >= 2:
        return noise / math.sqrt(like[0].numel())
    return 0.02 * noise


class _OpenAIArchive(nn.Module):
    """Holds a CLIP's modules under OpenAI's names, plus the archive's extra scalar buffers."""

    def __init__(self, clip: nn.Module, arch: ClipArchitecture) -> None:
        super().__init__()
        self.visual = clip.visual
        self.transformer = clip.transformer
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.logit_scale = clip.logit_scale
        self.register_buffer("input_resolution", torch.tensor(arch.image_size))
        self.register_buffer("context_length", torch.tensor(arch.context_length))
        self.register_buffer("vocab_size", torch.tensor(arch.vocab_size))

    def encode_image(self, image: Tensor) -> Tensor:
        """(B, 3, R, R) -> (B, D)."""
        return self.visual(image.to(self.visual.conv1.weight.dtype))

    def encode_text(self, text: Tensor) -> Tensor:
        """Token ids (B, L) -> (B, D), pooled at the EOT token (the highest id)."""
        dtype = self.text_projection.dtype
        n = text.shape[1]
        mask = torch.full((n, n), float("-inf")).triu(1)  # (L, L) causal
        x = self.token_embedding(text).to(dtype) + self.positional_embedding.to(dtype)  # (B, L, C)
        x = self.ln_final(self.transformer(x, attn_mask=mask))  # (B, L, C)
        x = x[torch.arange(x.shape[0]), text.argmax(dim=-1)]  # (B, C)
        return x @ self.text_projection  # (B, D)

    def forward(self, image: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """Image-text logits, both directions."""
        a = self.encode_image(image)
        b = self.encode_text(text)
        a = a / a.norm(dim=-1, keepdim=True)
        b = b / b.norm(dim=-1, keepdim=True)
        logits = self.logit_scale.exp() * a.float() @ b.float().t()
        return logits, logits.t()


def tiny_clip_state_dict(seed: int = 0, arch: ClipArchitecture = TINY_CLIP) -> dict[str, Tensor]:
    """Random OpenAI-layout CLIP weights (fp16 where OpenAI stores fp16), deterministic in ``seed``."""
    from open_clip.model import convert_weights_to_lp

    model = build_clip(arch, quick_gelu=True)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(_random_value(key, value, gen))
    convert_weights_to_lp(model, dtype=torch.float16)  # what OpenAI's archives hold
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_tiny_clip(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Write a tiny ViT CLIP as an OpenAI-format TorchScript archive and as a plain state dict.

    Returns {"clip": .../tiny-clip-vit.pt (TorchScript), "clip_state_dict": .../tiny-clip-vit-state-dict.pt}.
    """
    from open_clip.model import convert_weights_to_lp

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arch = TINY_CLIP
    state = tiny_clip_state_dict(seed, arch)

    model = build_clip(arch, quick_gelu=True)
    convert_weights_to_lp(model, dtype=torch.float16)
    model.load_state_dict(state)
    wrapper = _OpenAIArchive(model, arch).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, arch.image_size, arch.image_size, generator=gen)  # (1, 3, R, R)
    text = torch.zeros(1, arch.context_length, dtype=torch.long)  # (1, L)
    text[0, :3] = torch.tensor([arch.vocab_size - 2, 320, arch.vocab_size - 1])  # SOT, token, EOT
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks become constants
        traced = torch.jit.trace_module(
            wrapper,
            {"forward": (image, text), "encode_image": (image,), "encode_text": (text,)},
            check_trace=False,
        )
    archive = directory / "tiny-clip-vit.pt"
    traced.save(str(archive))

    state_path = directory / "tiny-clip-vit-state-dict.pt"
    full = dict(state)
    for key in ("input_resolution", "context_length", "vocab_size"):
        full[key] = getattr(wrapper, key).clone()
    torch.save(full, state_path)
    return {"clip": archive, "clip_state_dict": state_path}
