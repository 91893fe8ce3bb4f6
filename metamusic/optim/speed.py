"""Execution settings that make the optimisation step fast without changing what it computes.

Each helper changes how the decoder or perceptor runs (tensor layout, recomputation,
compilation), never the values it produces beyond float rounding:

- :func:`sequence_first_attention`: runs open_clip's batch-first ViT blocks sequence-first, the
  layout OpenAI's CLIP uses. With batch-first, ``nn.MultiheadAttention`` feeds a transposed
  (non-contiguous) tensor to its input projection, which torch 2.x runs in bf16 as a batched
  matmul over 50 copies of the weight (measured ~55x slower than the contiguous matmul).
- :func:`decoder_checkpointing`: gradient checkpointing of the VQGAN decoder for one call.
- :data:`FLOAT32_LEVELS`: how many of the decoder's low-resolution levels get their forward value
  in float32 under autocast: this one does change values, toward fp32's (see its comment);
  :data:`FLOAT32_LAST_UPSAMPLE`: whether the last of them includes its upsampling (it does not).
- :func:`low_precision_twin` / :func:`low_precision_perceptor`: bf16 copies of the frozen models,
  made once, so autocast does not convert every weight on every step (CPU, :func:`twins_help`).
- :func:`channels_last_helps`: whether a channels-last decoder input is faster (measured).
- :func:`compiled_call`: one ``torch.compile`` per callable kind per process, shared by every
  Stepper (a new Stepper per segment does not recompile).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import weakref
from typing import Any, Callable, Iterator

import torch
from torch import nn

from metamusic.optim.prepack import prepack_convolutions

__all__ = [
    "channels_last_helps",
    "compiled_call",
    "decoder_checkpointing",
    "FLOAT32_LAST_UPSAMPLE",
    "FLOAT32_LEVELS",
    "has_checkpointing",
    "low_precision_perceptor",
    "low_precision_twin",
    "sequence_first_attention",
    "twins_help",
    "winograd_convolutions",
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


@contextlib.contextmanager
def winograd_convolutions(module: nn.Module) -> Iterator[None]:
    """Inside the block, the 3x3 convolutions of ``module`` (``models.vqgan.Conv3x3``) run as
    Winograd F(4x4, 3x3) where it is faster (float32, no gradient, CPU, >= 32x32); flags restored."""
    convs = [m for m in module.modules() if hasattr(m, "winograd")]
    before = [m.winograd for m in convs]
    for m in convs:
        m.winograd = True
    try:
        yield
    finally:
        for m, flag in zip(convs, before):
            m.winograd = flag


# Lowest-resolution decoder levels (with ``conv_in`` and ``mid``) whose forward VALUE is computed
# in float32 under bf16/fp16 (``optim.stepper.decode_quantised``); their gradient still flows
# through the low-precision graph. bf16 rounding early in the decoder grows into a ~1.7% error of
# the image, which moves the cut-outs' max-pooling and the clamp's routing of the gradient: with
# everything in bf16 the latent's gradient has cosine 0.970-0.972 to fp32's (f16_16384 at 256x256,
# random weights, seeds 7, 8); with these 3 levels' values in float32 (image error 0.5%), 0.991-0.993.
# An fp32 forward with a bf16 backward through the whole decoder gives 0.997: the backward's own
# rounding costs little.
FLOAT32_LEVELS = 3
# Whether the last float32 level's upsampling is part of the float32 pass. It is not: it runs
# once, in bf16 on the float32 value, in the graph the gradient flows through (its output goes
# on in float32, see Decoder.forward_high), instead of in float32 for the value and again in bf16
# for the gradient. Seeds 7, 8, 9 as above: cosine 0.9923, 0.9911, 0.9922 against 0.9917, 0.9918,
# 0.9925 with it in float32. The 64 -> 128 upsampling (256 channels) takes 43 ms in float32 and
# 10 ms in bf16; whole steps, interleaved in one process (8 pairs, twice): 36 and 64 ms faster.
FLOAT32_LAST_UPSAMPLE = False


def twins_help(device: torch.device) -> bool:
    """Whether low-precision copies of the frozen models (:func:`low_precision_twin`) pay off.

    On CPU, autocast converts every frozen weight again on every call (its cache keeps only
    weights that require grad): with f16_16384 + ViT-B/32 that was ~50 ms of a ~1.5 s bf16 step,
    and float32 weights also keep the convolutions out of oneDNN's channels-last bf16 kernels.
    On CUDA the conversion is cheap and memory is the scarcer resource, so no copies there.
    """
    return device.type == "cpu"


_NORMS = (nn.GroupNorm, nn.LayerNorm)
_TWINS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], nn.Module]] = weakref.WeakKeyDictionary()
_PERCEPTORS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Module, Any]] = weakref.WeakKeyDictionary()


def _signature(module: nn.Module, dtype: torch.dtype, channels_last: bool) -> tuple[Any, ...]:
    """What a twin depends on: the target format and every parameter's storage and version."""
    return (dtype, channels_last, *((p.data_ptr(), p._version, p.device) for p in module.parameters()))


def _convert(twin: nn.Module, dtype: torch.dtype, channels_last: bool) -> None:
    """Convert, in place, every floating parameter and buffer outside normalisation layers."""
    for module in twin.modules():
        if isinstance(module, _NORMS):
            continue  # float32 statistics and affine: their inputs are converted by the kernels
        for t in [*module._parameters.values(), *module._buffers.values()]:
            if t is None or not t.is_floating_point():
                continue
            t.data = t.data.to(dtype)
            if channels_last and t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)


def low_precision_twin(
    module: nn.Module, dtype: torch.dtype, channels_last: bool = False, prepack: bool = False
) -> nn.Module:
    """A copy of a frozen ``module`` with its weights in ``dtype`` (4-d ones channels-last if asked).

    Made once and reused while no parameter of ``module`` changes. Normalisation layers keep
    float32 parameters. Modules with a ``fold_from(original)`` method (the decoder's Upsample)
    derive their cached weights from the float32 original, so those are rounded only once.
    ``prepack``: its convolutions reorder their bf16 weights for oneDNN once, where that is
    faster (small inputs; ``optim.prepack``).
    """
    signature = (prepack, *_signature(module, dtype, channels_last))
    cached = _TWINS.get(module)
    if cached is not None and cached[0] == signature:
        return cached[1]
    twin = copy.deepcopy(module)
    _convert(twin, dtype, channels_last)
    for original, copied in zip(module.modules(), twin.modules()):
        if hasattr(copied, "fold_from"):
            copied.fold_from(original)
    if prepack:
        prepack_convolutions(twin)
    _TWINS[module] = (signature, twin)
    return twin


def low_precision_perceptor(perceptor: Any, dtype: torch.dtype) -> Any:
    """The perceptor with its image tower replaced by a :func:`low_precision_twin` (cached).

    The text tower is not copied: the step embeds images only. Perceptors without a
    ``model.visual`` get a twin of the whole model; other kinds of perceptor are returned as is.
    """
    model = getattr(perceptor, "model", None)
    if not isinstance(model, nn.Module) or not dataclasses.is_dataclass(perceptor):
        return perceptor
    visual = getattr(model, "visual", None)
    if not isinstance(visual, nn.Module):
        return dataclasses.replace(perceptor, model=low_precision_twin(model, dtype))
    twin = low_precision_twin(visual, dtype)
    cached = _PERCEPTORS.get(model)
    if cached is None or cached[0] is not twin:
        shell = copy.copy(model)  # shares every submodule but the image tower
        shell._modules = {**model._modules, "visual": twin}
        cached = (twin, dataclasses.replace(perceptor, model=shell))
        _PERCEPTORS[model] = cached
    return cached[1]



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

    Measured on a 2-core AVX512/AMX-BF16 CPU, f16_16384 decoder at 256x256, forward + backward
    (bench/README.md): fp32 1.15x faster (3.47 -> 3.00 s); bf16 1.65x faster (1.09 -> 0.66 s, all
    levels bf16), since oneDNN's channels-last bf16 convolutions use AMX (a 3x3 128-channel conv
    at 256x256: 9.7 ms vs 53.7 ms in NCHW) and models.norm.GroupNorm replaced torch's slow
    channels-last GroupNorm backward. Only bf16/fp16 turn it on by default: in fp32 the gain is
    small and a batch of latents would round differently from one latent at a time. Not
    measured on CUDA, so off there unless asked for.
    """
    return device.type == "cpu" and dtype is not None
