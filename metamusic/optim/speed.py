"""Execution settings that make the optimisation step fast without changing what it computes.

Each helper changes how the decoder or perceptor runs (tensor layout, recomputation,
compilation), never the values it produces beyond float rounding:

- :func:`sequence_first_attention`: runs open_clip's batch-first ViT blocks sequence-first, the
  layout OpenAI's CLIP uses. With batch-first, ``nn.MultiheadAttention`` feeds a transposed
  (non-contiguous) tensor to its input projection, which torch 2.x runs in bf16 as a batched
  matmul over 50 copies of the weight (measured ~55x slower than the contiguous matmul).
- :func:`decoder_checkpointing`: gradient checkpointing of the VQGAN decoder for one call.
- :func:`decoder_float32_levels`: under autocast, the decoder's low-resolution levels in float32
  (:data:`FLOAT32_LEVELS`): this one does change values, toward fp32's (see its docstring).
- :func:`channels_last_helps`: whether a channels-last decoder input is faster (measured).
- :func:`compiled_call`: one ``torch.compile`` per callable kind per process, shared by every
  Stepper (a new Stepper per segment does not recompile).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import torch
from torch import nn

__all__ = [
    "channels_last_helps",
    "compiled_call",
    "decoder_checkpointing",
    "decoder_float32_levels",
    "FLOAT32_LEVELS",
    "has_checkpointing",
    "sequence_first_attention",
]


def _batch_first_transformers(model: nn.Module) -> list[tuple[nn.Module, list[nn.Module]]]:
    """open_clip-style transformers (``resblocks`` of ``attn`` = nn.MultiheadAttention) run batch-first.

    Returns (transformer, its attention modules) pairs; a transformer whose blocks use any other
    attention module is left out (its layout cannot be flipped safely).
    """
    found = []
    for module in model.modules():
        blocks = getattr(module, "resblocks", None)
        if getattr(module, "batch_first", False) is not True or not isinstance(blocks, nn.ModuleList):
            continue
        attns = [getattr(block, "attn", None) for block in blocks]
        if attns and all(isinstance(a, nn.MultiheadAttention) and a.batch_first for a in attns):
            found.append((module, attns))
    return found


@contextlib.contextmanager
def sequence_first_attention(perceptor: Any) -> Iterator[None]:
    """Run the perceptor's batch-first open_clip transformers sequence-first inside the block.

    open_clip's ``Transformer.forward`` transposes to (L, B, D) itself when ``batch_first`` is
    False, so flipping the flag on the transformer and its attention modules gives the same
    values with contiguous projections. Perceptors without such modules are left alone. Not
    thread-safe: do not use the same perceptor from another thread meanwhile.
    """
    model = getattr(perceptor, "model", perceptor)
    model = getattr(model, "visual", model)
    flipped = _batch_first_transformers(model) if isinstance(model, nn.Module) else []
    for transformer, attns in flipped:
        transformer.batch_first = False
        for attn in attns:
            attn.batch_first = False
    try:
        yield
    finally:
        for transformer, attns in flipped:
            transformer.batch_first = True
            for attn in attns:
                attn.batch_first = True


def _checkpointed_module(decoder: Any) -> Any:
    """The module carrying ``use_checkpointing`` (VQGAN.decoder, or the decoder itself), or None."""
    for candidate in (getattr(decoder, "decoder", None), decoder):
        if candidate is not None and isinstance(getattr(candidate, "use_checkpointing", None), bool):
            return candidate
    return None


def has_checkpointing(decoder: Any) -> bool:
    """True when the decoder supports gradient checkpointing (``use_checkpointing`` flag)."""
    return _checkpointed_module(decoder) is not None


@contextlib.contextmanager
def decoder_checkpointing(decoder: Any, enabled: bool) -> Iterator[None]:
    """Set the decoder's ``use_checkpointing`` to ``enabled`` inside the block, then restore it.

    The flag is read when the forward pass runs; the recomputation in backward needs no flag.
    """
    module = _checkpointed_module(decoder) if enabled else None
    if module is None:
        yield
        return
    before = module.use_checkpointing
    module.use_checkpointing = True
    try:
        yield
    finally:
        module.use_checkpointing = before


# Lowest-resolution decoder levels kept in float32 under bf16/fp16 autocast. f16_16384 at 256x256,
# random weights, cosine of the latent's gradient to fp32's (seeds 7, 8, 9; bench/README.md): all
# bf16 0.963-0.972; conv_in + mid + 2 levels (16x16, 32x32) 0.985-0.989; + 3 levels (up to 64x64)
# 0.991-0.993, for ~10% of the decoder's multiply-adds.
FLOAT32_LEVELS = 3


def _float32_module(decoder: Any) -> Any:
    """The module carrying ``float32_levels`` (VQGAN.decoder, or the decoder itself), or None."""
    for candidate in (getattr(decoder, "decoder", None), decoder):
        if candidate is not None and isinstance(getattr(candidate, "float32_levels", None), int):
            return candidate
    return None


@contextlib.contextmanager
def decoder_float32_levels(decoder: Any, levels: int) -> Iterator[None]:
    """Set the decoder's ``float32_levels`` to ``levels`` inside the block, then restore it.

    Decoders without the attribute are left alone. Only acts under autocast: in float32 the
    decoder computes the same either way.
    """
    module = _float32_module(decoder)
    if module is None:
        yield
        return
    before = module.float32_levels
    module.float32_levels = levels
    try:
        yield
    finally:
        module.float32_levels = before


def _decode(decoder: Any, z_q: torch.Tensor) -> torch.Tensor:
    """decoder.decode(z_q): the callable that is compiled for the decoder."""
    return decoder.decode(z_q)


def _encode_image(perceptor: Any, x: torch.Tensor) -> torch.Tensor:
    """perceptor.encode_image(x): the callable that is compiled for the perceptor."""
    return perceptor.encode_image(x)


_CALLS: dict[str, Callable[..., torch.Tensor]] = {"decode": _decode, "encode_image": _encode_image}


@functools.lru_cache(maxsize=None)
def compiled_call(kind: str) -> Callable[..., torch.Tensor]:
    """``torch.compile`` of the ``kind`` call ("decode" or "encode_image"), made once per process.

    The compiled function takes the model as its first argument, so every Stepper (one per
    segment) reuses the same compiled code; torch recompiles only for a new model or shape.
    """
    return torch.compile(_CALLS[kind], dynamic=False)


def channels_last_helps(device: torch.device, dtype: torch.dtype | None) -> bool:
    """Whether feeding the decoder a channels-last latent speeds up its forward + backward.

    Measured on a 2-core AVX512-BF16 CPU, f16_16384 decoder at 256x256 (bench/README.md): fp32
    1.15x faster (3.47 -> 3.00 s), bf16 autocast 1.12x slower (1.58 -> 1.77 s: GroupNorm's
    channels-last backward). Not measured on CUDA, so off there unless asked for.
    """
    return device.type == "cpu" and dtype is None
