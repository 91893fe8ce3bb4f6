"""The VQGAN-CLIP optimisation step, separate from the models that it drives.

One step (nerdyrodent/VQGAN-CLIP generate.py ``train``/``ascend_txt``):
1. z_q = quantise(z) with a straight-through gradient;
2. image = clamp_with_grad((decoder.decode(z_q) + 1) / 2, 0, 1)            # (B, 3, H, W)
3. cut-outs of the image (seeded), CLIP-normalised and embedded            # (cutn, D)
4. loss = init term (if -iw) + sum of target losses;
5. backward (fp16: through a GradScaler), optimiser step, clamp z per channel to the codebook.

Every path of the project runs these through the functions below, so there is one of each:
:func:`quantise` + :func:`decode_quantised` (precision, --low_memory, --compile), :func:`draw_cutouts`
+ :func:`embed_cutouts` (cut-outs, augments, noise; also image prompts, :func:`embed_image_prompt`),
:func:`loss_terms` (the loss) and ``Stepper._update`` (fp16 scaler and optimiser). :class:`Stepper`
runs one latent; ``batched.BatchedStepper`` runs B latents with one decoder and one CLIP call.

The decoder needs ``decode(z_q)`` and ``codebook`` (K, C) (optionally ``quantize_latent(z)``);
the perceptor needs ``input_resolution``, ``normalize(x01)`` and ``encode_image(x)``. Every
random draw of a step comes from its integer seed, so a seed reproduces a run exactly on CPU
and the global torch RNG is neither read nor changed.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from metamusic.errors import InputError
from metamusic.ops import clamp_with_grad, replace_grad, vector_quantize
from metamusic.optim.augments import (
    AUGMENT_CODES,
    DEFAULT_AUGMENTS,
    apply_augments,
    method_augments,
)
from metamusic.optim.cutouts import CUT_METHODS, make_cutouts
from metamusic.optim.init import clamp_latent, z_bounds
from metamusic.optim.optimisers import build_optimiser, canonical_optimiser
from metamusic.optim.prompts import Target, target_loss
from metamusic.optim.speed import (
    FLOAT32_LAST_UPSAMPLE,
    FLOAT32_LEVELS,
    channels_last_helps,
    compiled_call,
    decoder_checkpointing,
    has_checkpointing,
    low_precision_perceptor,
    low_precision_twin,
    sequence_first_attention,
    twins_help,
    winograd_convolutions,
)

__all__ = [
    "INIT_WEIGHT_TARGETS",
    "PRECISIONS",
    "StepConfig",
    "StepResult",
    "Stepper",
    "decode_quantised",
    "draw_cutouts",
    "embed_cutouts",
    "embed_image_prompt",
    "loss_terms",
    "optimise_segment",
    "quantise",
    "resolve_precision",
    "step_seed",
]

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
INIT_WEIGHT_TARGETS = ("zero", "start")


class Decoder(Protocol):
    codebook: torch.Tensor  # (K, C)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor: ...  # (B, C, h, w) -> (B, 3, H, W)


class Perceptor(Protocol):
    input_resolution: int

    def normalize(self, x01: torch.Tensor) -> torch.Tensor: ...

    def encode_image(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, 3, S, S) -> (B, D)


# Field types of StepConfig checked on construction (a config file may hold "8" for 8).
_NUMBER_FIELDS = ("cut_pow", "lr", "init_weight", "noise_fac")
_TEXT_FIELDS = ("cut_method", "optimiser", "precision", "init_weight_target")
_SWITCH_FIELDS = ("compile", "low_memory")


@dataclass(frozen=True)
class StepConfig:
    """Settings of the optimisation step (flags -cutm -cuts -cutp -aug -opt -lr -iw, --precision ...).

    This is the ``step`` group of :class:`metamusic.config.Config`. init_weight_target: "zero"
    (VQGAN-CLIP: ``mse(z, 0) * iw / 2 / (2i + 1)``, i the step within the segment) or "start"
    (ours: ``mse(z, z_start) * iw / 2`` at every step). precision: "fp32", "bf16", "fp16" or "auto"
    (autocast of decoder and perceptor only; latent, loss and optimiser state stay float32).
    compile: torch.compile the decoder's decode and the perceptor's encode_image (once per
    process). low_memory: gradient checkpointing of the decoder (needs ``use_checkpointing``, as
    VQGAN's). channels_last: feed the decoder a channels-last latent (None: where measured faster,
    see ``speed.channels_last_helps``). None of these three changes values beyond float rounding.
    """

    cut_method: str = "latest"
    cutn: int = 32
    cut_pow: float = 1.0
    augments: tuple[str, ...] = DEFAULT_AUGMENTS
    optimiser: str = "Adam"
    lr: float = 0.1
    init_weight: float = 0.0
    init_weight_target: str = "zero"
    noise_fac: float = 0.1
    precision: str = "auto"
    compile: bool = False
    low_memory: bool = False
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        self._check_types()
        if self.cut_method not in CUT_METHODS:
            raise InputError(f"-cutm {self.cut_method}: unknown cut method; choose from {' '.join(CUT_METHODS)}")
        if self.cutn < 1:
            raise InputError(f"-cuts {self.cutn}: expected a number of cut-outs >= 1")
        if not self.cut_pow > 0:
            raise InputError(f"-cutp {self.cut_pow}: expected a power > 0, e.g. 1.0")
        augments = tuple(self.augments.split() if isinstance(self.augments, str) else self.augments)
        unknown = [a for a in augments if a not in AUGMENT_CODES]
        if unknown:
            raise InputError(
                f"-aug {' '.join(map(str, unknown))}: unknown augment code; choose from {' '.join(AUGMENT_CODES)}"
            )
        object.__setattr__(self, "augments", augments)
        object.__setattr__(self, "optimiser", canonical_optimiser(self.optimiser))
        if not self.lr > 0:
            raise InputError(f"-lr {self.lr}: expected a learning rate > 0, e.g. 0.1")
        if self.init_weight_target not in INIT_WEIGHT_TARGETS:
            raise InputError(f"--init_weight_target {self.init_weight_target}: unknown init weight target; "
                             f"choose from {' '.join(INIT_WEIGHT_TARGETS)}")
        if self.noise_fac < 0:
            raise InputError(f"cut-out noise factor must be >= 0, got {self.noise_fac}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision}: unknown precision; choose from {' '.join(PRECISIONS)}")

    def _check_types(self) -> None:
        """One-line InputError for a value of the wrong type (e.g. ``cutn: "8"`` in a config file)."""

        def bad(name: str, kind: str) -> InputError:
            return InputError(f"step setting {name}: expected {kind}, got {getattr(self, name)!r}")

        if isinstance(self.cutn, bool) or not isinstance(self.cutn, int):
            raise bad("cutn", "a whole number")
        for name in _NUMBER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(name, "a number")
        for name in _TEXT_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise bad(name, "a name")
        for name in _SWITCH_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "true or false")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise bad("channels_last", "true, false or null")
        if not isinstance(self.augments, (str, list, tuple)):
            raise bad("augments", "a list of augment codes")


@dataclass
class StepResult:
    """What one step produced. losses: [init loss if init_weight] + one per target, in order."""

    loss: float
    losses: list[float]
    image: torch.Tensor = field(repr=False)  # (1, 3, H, W) in [0, 1], from z before the update


def step_seed(seed: int, segment_index: int, step: int) -> int:
    """The seed of one step: first 63 bits of BLAKE2b-64 of "seed:segment:step" (fixed formula)."""
    digest = hashlib.blake2b(f"{seed}:{segment_index}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision name on a device (None = no autocast, float32).

    auto: bf16 on CUDA when supported else fp16; on CPU bf16 when oneDNN reports native
    bf16 support (AVX512-BF16/AMX), else fp32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise InputError(f"unknown precision {precision!r}; valid: {' '.join(PRECISIONS)}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        try:
            return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        except (AttributeError, RuntimeError):
            return None
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for ``dtype`` on the device, or a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# The one decode path: latent -> codes -> image


def quantise(decoder: Decoder, z: torch.Tensor) -> torch.Tensor:
    """Nearest code per position, float32, with a straight-through gradient. (B, C, h, w) -> same."""
    quantize = getattr(decoder, "quantize_latent", None)
    if quantize is not None:
        return quantize(z.float())
    return vector_quantize(z.float(), decoder.codebook.to(z.device, torch.float32))


def decode_quantised(
    decoder: Decoder,
    z_q: torch.Tensor,
    dtype: torch.dtype | None,
    *,
    low_memory: bool = False,
    compile: bool = False,
    channels_last: bool | None = None,
) -> torch.Tensor:
    """Image in [0, 1] of quantised latents (VQGAN-CLIP's ``synth``). (B, C, h, w) -> (B, 3, H, W)

    In float32 when ``dtype`` is None. Otherwise under autocast to ``dtype``, through the
    decoder's :func:`speed.low_precision_twin` where that helps (CPU), with the value of the
    first ``speed.FLOAT32_LEVELS`` levels computed in float32 (:func:`_decode_mixed`). The
    decoder is checkpointed (``low_memory``; only acts when gradients are on) and/or compiled;
    the image is clamped with a gradient that pushes back into range. ``channels_last`` None:
    where measured faster (``speed.channels_last_helps``).
    """
    if channels_last is None:
        channels_last = channels_last_helps(z_q.device, dtype)
    if channels_last:
        z_q = z_q.contiguous(memory_format=torch.channels_last)
    if dtype is not None and not compile and hasattr(decoder, "decode_low"):
        raw = _decode_mixed(decoder, z_q, dtype, channels_last, low_memory)
    else:
        call = functools.partial(compiled_call("decode"), decoder) if compile else decoder.decode
        with decoder_checkpointing(decoder, low_memory), _autocast(z_q.device, dtype):
            raw = call(z_q)  # (B, 3, H, W) ~[-1, 1]
    return clamp_with_grad((raw.float() + 1) / 2, 0.0, 1.0)  # (B, 3, H, W)


def _decode_mixed(
    decoder: Any, z_q: torch.Tensor, dtype: torch.dtype, channels_last: bool, low_memory: bool
) -> torch.Tensor:
    """Raw decode in ``dtype`` whose low levels' VALUE comes from float32 (``speed.FLOAT32_LEVELS``).

    The float32 pass runs without a gradient; the gradient flows through the ``dtype`` pass of
    the same levels (straight-through, ``ops.replace_grad``), so the backward runs entirely in
    ``dtype``, and ``low_memory`` checkpoints that pass's module. Without gradients the low
    levels run in float32 only.
    """
    split = (FLOAT32_LEVELS, FLOAT32_LAST_UPSAMPLE)
    fast = low_precision_twin(decoder, dtype, channels_last, prepack=True) if twins_help(z_q.device) else decoder
    with torch.no_grad(), winograd_convolutions(decoder):
        # NCHW in: at 16x16 oneDNN's float32 convolutions are faster so (and need no
        # channels-last copy of each weight); the upsamplings switch to channels-last.
        exact = decoder.decode_low(z_q.float().contiguous(), *split)  # (B, C', h', w') float32
    if channels_last:
        exact = exact.contiguous(memory_format=torch.channels_last)
    with decoder_checkpointing(fast, low_memory), _autocast(z_q.device, dtype):
        h = replace_grad(exact, fast.decode_low(z_q, *split)) if torch.is_grad_enabled() else exact
        return fast.decode_high(h, *split)  # (B, 3, H, W)


# ---------------------------------------------------------------------------------------------
# The one cut-out path: image -> cut-outs -> CLIP embeddings


def _augment_seed(generator: torch.Generator) -> int:
    """An integer seed for kornia's (global-RNG) augments, drawn from the step's generator."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


def step_augments(config: StepConfig, cut_size: int, device: torch.device) -> nn.Module | None:
    """The kornia augment pipeline of the config's cut method, on ``device``."""
    augment = method_augments(config.cut_method, config.augments, cut_size)
    return augment.to(device) if augment is not None else None


def draw_cutouts(
    image: torch.Tensor,
    config: StepConfig,
    augment: nn.Module | None,
    cut_size: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """The ``config.cutn`` augmented, noised cut-outs of one image; randomness from ``generator``.

    image: (1, 3, H, W) in [0, 1] -> (cutn, 3, S, S). Draw order: the augment seed, then crops
    and noise (``cutouts.make_cutouts``).
    """
    aug_seed = _augment_seed(generator)
    return make_cutouts(
        image,
        config.cut_method,
        cut_size,
        config.cutn,
        config.cut_pow,
        augment=lambda batch: apply_augments(augment, batch, aug_seed),
        generator=generator,
        noise_fac=config.noise_fac,
    )


def embed_cutouts(
    perceptor: Perceptor, cutouts: torch.Tensor, dtype: torch.dtype | None, compile: bool = False
) -> torch.Tensor:
    """CLIP image embeddings (float32) of cut-outs in [0, 1]. (B, 3, S, S) -> (B, D).

    Through the perceptor's ``encode_image_fast`` when it has one (open_clip ViTs: fused q/k/v
    attention, ``models.clip_tower.vit_image_features``); else open_clip ViTs run sequence-first (same
    values, contiguous projections: see ``speed``).
    """
    x = perceptor.normalize(cutouts)
    if dtype is not None and not compile and twins_help(cutouts.device):
        perceptor = low_precision_perceptor(perceptor, dtype)
    fast = getattr(perceptor, "encode_image_fast", None)
    encode = functools.partial(compiled_call("encode_image"), perceptor) if compile else (
        fast or perceptor.encode_image)
    with sequence_first_attention(perceptor), _autocast(cutouts.device, dtype):
        embeds = encode(x)
    return embeds.float()


# ---------------------------------------------------------------------------------------------
# The one loss assembly


def init_term(z: torch.Tensor, z_start: torch.Tensor, config: StepConfig, index: int) -> torch.Tensor:
    """The -iw term of step ``index`` (counted within the segment).

    "zero" (nerdyrodent/VQGAN-CLIP generate.py ``ascend_txt``): ``mse(z, 0) * iw / 2 / (2i + 1)``,
    a pull toward zero that fades; "start": ``mse(z, z_start) * iw / 2`` at every step.
    """
    if config.init_weight_target == "zero":
        return F.mse_loss(z, torch.zeros_like(z)) * (config.init_weight / (2 * index + 1)) / 2
    return F.mse_loss(z, z_start) * config.init_weight / 2


def loss_terms(
    embeds: torch.Tensor,
    targets: Sequence[Target],
    z: torch.Tensor,
    z_start: torch.Tensor,
    config: StepConfig,
    index: int,
) -> list[torch.Tensor]:
    """The loss terms of one latent: [init term if init_weight] + one per target. embeds: (cutn, D)."""
    terms = [init_term(z, z_start, config, index)] if config.init_weight else []
    return terms + [target_loss(embeds, t) for t in targets]


def _check_index(index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InputError(f"step index must be a whole number >= 0, got {index!r}")


class Stepper:
    """Holds the latent z (a float32 leaf tensor), its optimiser and fp16 scaler; ``step`` runs one step."""

    def __init__(self, decoder: Decoder, perceptor: Perceptor, config: StepConfig, z: torch.Tensor):
        if z.ndim != 4 or z.shape[0] != 1:
            raise InputError(f"latent must have shape (1, C, h, w), got {tuple(z.shape)}")
        self.decoder = decoder
        self.perceptor = perceptor
        self.config = config
        self.device = z.device
        self.z = z.detach().clone().float().requires_grad_(True)  # (1, C, h, w) leaf
        self.z_init = self.z.detach().clone()  # (1, C, h, w)
        codebook = decoder.codebook.detach()
        if codebook.shape[1] != z.shape[1]:
            raise InputError(f"latent has {z.shape[1]} channels but the codebook has {codebook.shape[1]}")
        self.z_min, self.z_max = (b.to(self.device, torch.float32) for b in z_bounds(codebook))
        self.optimiser = build_optimiser(config.optimiser, [self.z], config.lr)
        self.dtype = resolve_precision(config.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None
        self.augment = step_augments(config, perceptor.input_resolution, self.device)
        if config.low_memory and not has_checkpointing(decoder):
            raise InputError(
                "low_memory needs a decoder with gradient checkpointing (use_checkpointing), "
                f"{type(decoder).__name__} has none; run without --low_memory"
            )
        self.channels_last = (
            channels_last_helps(self.device, self.dtype) if config.channels_last is None else bool(config.channels_last)
        )

    @property
    def latent(self) -> torch.Tensor:
        """A detached copy of the current latent z. (1, C, h, w)"""
        return self.z.detach().clone()

    # -- the pieces of a step, shared with BatchedStepper

    def _quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-code latent with straight-through gradient, always in float32."""
        return quantise(self.decoder, z)

    def _decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] of quantised latents with this step's settings. (B, C, h, w) -> (B, 3, H, W)"""
        cfg = self.config
        return decode_quantised(
            self.decoder, z_q, self.dtype, low_memory=cfg.low_memory, compile=cfg.compile,
            channels_last=self.channels_last,
        )

    def _synth(self, z: torch.Tensor) -> torch.Tensor:
        """Image in [0, 1] of latent z. (1, C, h, w) -> (1, 3, H, W)"""
        return self._decode(self._quantize(z))

    def _cutouts(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """This step's cut-outs of ``image`` (1, 3, H, W) -> (cutn, 3, S, S)."""
        return draw_cutouts(image, self.config, self.augment, self.perceptor.input_resolution, generator)

    def _embed(self, cutouts: torch.Tensor) -> torch.Tensor:
        """CLIP embeddings of cut-outs. (N, 3, S, S) -> (N, D)"""
        return embed_cutouts(self.perceptor, cutouts, self.dtype, self.config.compile)

    def _terms(self, embeds: torch.Tensor, targets: Sequence[Target], index: int) -> list[torch.Tensor]:
        return loss_terms(embeds, targets, self.z, self.z_init, self.config, index)

    def _scaled(self, total: torch.Tensor) -> torch.Tensor:
        """The loss to call backward on: scaled by the fp16 GradScaler when there is one."""
        return total if self.scaler is None else self.scaler.scale(total)

    def _update(self) -> None:
        """Optimiser step (through the fp16 scaler when there is one), then clamp z to the codebook."""
        if self.scaler is None:
            self.optimiser.step()
        else:
            self.scaler.step(self.optimiser)
            self.scaler.update()
        clamp_latent(self.z, self.z_min, self.z_max)

    def _check_targets(self, targets: Sequence[Target], what: str = "") -> None:
        if not targets and not self.config.init_weight:
            raise InputError(f"{what}nothing to optimise toward: give at least one prompt")

    # -- public

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        """The decoded image of the current latent, without a step. (1, 3, H, W) in [0, 1]"""
        return self._synth(self.z.detach())

    def losses(
        self, image: torch.Tensor, targets: Sequence[Target], generator: torch.Generator, index: int
    ) -> list[torch.Tensor]:
        """The loss terms of ``image`` (with grad) at step ``index``: [init term] + one per target."""
        return self._terms(self._embed(self._cutouts(image, generator)), targets, index)

    def step(
        self,
        targets: Sequence[Target],
        seed: int,
        extra_image_targets: Sequence[Target] = (),
        *,
        index: int,
    ) -> StepResult:
        """Step ``index`` of the segment toward ``targets`` (+ extra ones), all randomness from ``seed``.

        ``index`` counts steps within the segment: the "zero" init-weight term decays with it.
        """
        _check_index(index)
        all_targets = [*targets, *extra_image_targets]
        self._check_targets(all_targets)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.optimiser.zero_grad(set_to_none=True)
        image = self._synth(self.z)  # (1, 3, H, W)
        terms = torch.stack(self.losses(image, all_targets, generator, index))  # (T,)
        self._scaled(terms.sum()).backward()
        self._update()
        values = terms.detach().float().cpu()  # one device sync per step for all the numbers
        return StepResult(loss=float(values.sum()), losses=values.tolist(), image=image.detach())

    def stepper_state(self) -> dict[str, Any]:
        """Optimiser and fp16 scaler state (copies): what carries from segment to segment."""
        return {
            "optimiser": copy.deepcopy(self.optimiser.state_dict()),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_stepper_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`stepper_state` (or a bare optimiser state dict of older run folders)."""
        if "param_groups" in state:  # a torch optimiser state dict on its own
            state = {"optimiser": state}
        if state.get("optimiser") is not None:
            self.optimiser.load_state_dict(copy.deepcopy(state["optimiser"]))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(dict(state["scaler"]))

    def state_dict(self) -> dict[str, Any]:
        """Latent, starting latent, optimiser and fp16 scaler state, for checkpoints."""
        return {"z": self.z.detach().clone(), "z_init": self.z_init.clone(), **self.stepper_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (copies; the given dict is never aliased)."""
        z = state["z"]
        if z.shape != self.z.shape:
            raise InputError(f"saved latent has shape {tuple(z.shape)}, expected {tuple(self.z.shape)}")
        with torch.no_grad():
            self.z.copy_(z)
            self.z_init.copy_(state.get("z_init", z))
        self.load_stepper_state(state)


def optimise_segment(
    decoder: Decoder,
    perceptor: Perceptor,
    config: StepConfig,
    z: torch.Tensor,
    targets: Sequence[Target],
    n_steps: int,
    seed: int,
    stepper_state: dict[str, Any] | None = None,
    on_step: Callable[[int, StepResult], None] | None = None,
    first_step_targets: Sequence[Target] = (),
    *,
    segment_index: int = 0,
    start_step: int = 0,
    z_init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Run steps start_step .. start_step + n_steps - 1 of a segment; return (z, stepper state).

    The stepper state is ``{"optimiser": ..., "scaler": ... or None}`` (:meth:`Stepper.stepper_state`):
    pass it to the next segment and save it for resume (a bare optimiser state dict is accepted
    too). Step i uses seed ``step_seed(seed, segment_index, i)`` and index i (the init-weight
    decay restarts each segment, as Music2Video); ``first_step_targets`` (the previous segment's
    last frame, as Music2Video) join the targets on step 0 only. ``on_step(i, result)`` sees every
    step. z_init (default: z) anchors the "start" init-weight term. No global state is touched.
    """
    if n_steps < 0:
        raise InputError(f"number of steps must be >= 0, got {n_steps}")
    stepper = Stepper(decoder, perceptor, config, z)
    if z_init is not None:
        with torch.no_grad():
            stepper.z_init.copy_(z_init)
    if stepper_state is not None:
        stepper.load_stepper_state(stepper_state)
    for i in range(start_step, start_step + n_steps):
        extra = first_step_targets if i == 0 else ()
        result = stepper.step(targets, step_seed(seed, segment_index, i), extra, index=i)
        if on_step is not None:
            on_step(i, result)
    return stepper.latent, stepper.stepper_state()


@torch.no_grad()
def embed_image_prompt(
    perceptor: Perceptor,
    image01: torch.Tensor,
    generator: torch.Generator,
    config: StepConfig,
    *,
    weight: float = 1.0,
    stop: float = -math.inf,
) -> Target:
    """Image prompt as VQGAN-CLIP: the embeddings of the image's step cut-outs, one row per cut-out.

    The same cut-outs, augments and noise as a step with ``config`` (nerdyrodent/VQGAN-CLIP
    generate.py embeds ``make_cutouts(image)``). image01: (1, 3, H, W) in [0, 1], already resized
    (``prompts.image_prompt_size``) -> Target (cutn, D).
    """
    device = image01.device
    augment = step_augments(config, perceptor.input_resolution, device)
    cutouts = draw_cutouts(image01.float(), config, augment, perceptor.input_resolution, generator)
    embeds = embed_cutouts(perceptor, cutouts, resolve_precision(config.precision, device), config.compile)
    return Target(embeds, weight, stop)
