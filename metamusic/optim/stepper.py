"""The VQGAN-CLIP optimisation step, separate from the models that it drives.

One step (VQGAN-CLIP's ``train``/``ascend_txt``):
1. z_q = quantise(z) with a straight-through gradient;
2. image = clamp_with_grad((decoder.decode(z_q) + 1) / 2, 0, 1)            # (1, 3, H, W)
3. cut-outs of the image (seeded), CLIP-normalised and embedded            # (cutn, D)
4. loss = sum of target losses (+ init_weight * mse(z, z_init) / 2);
5. backward, optimiser step, clamp z per channel to the codebook's range.

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

from metamusic.errors import InputError
from metamusic.ops import clamp_with_grad, vector_quantize
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
    channels_last_helps,
    compiled_call,
    decoder_checkpointing,
    has_checkpointing,
    sequence_first_attention,
)

__all__ = [
    "PRECISIONS",
    "StepConfig",
    "StepResult",
    "Stepper",
    "embed_image_prompt",
    "optimise_segment",
    "resolve_precision",
    "step_seed",
]

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


class Decoder(Protocol):
    codebook: torch.Tensor  # (K, C)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor: ...  # (1, C, h, w) -> (1, 3, H, W)


class Perceptor(Protocol):
    input_resolution: int

    def normalize(self, x01: torch.Tensor) -> torch.Tensor: ...

    def encode_image(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, 3, S, S) -> (B, D)


@dataclass(frozen=True)
class StepConfig:
    """Settings of the optimisation step (VQGAN-CLIP flags -cutm -cuts -cutp -aug -opt -lr -iw).

    precision: "fp32", "bf16", "fp16" or "auto" (autocast of decoder and perceptor only; the
    latent, the loss and the optimiser state stay float32).
    compile: torch.compile the decoder's decode and the perceptor's encode_image (compiled once
    per process, shared by every Stepper). low_memory: gradient checkpointing of the decoder
    (needs a decoder with ``use_checkpointing``, as VQGAN's). channels_last: feed the decoder a
    channels-last latent (None: only where measured faster, see ``speed.channels_last_helps``;
    off by default so BatchedStepper and Stepper round alike).
    None of the three changes the values computed beyond float rounding.
    """

    cut_method: str = "latest"
    cutn: int = 32
    cut_pow: float = 1.0
    augments: tuple[str, ...] = DEFAULT_AUGMENTS
    optimiser: str = "Adam"
    lr: float = 0.1
    init_weight: float = 0.0
    noise_fac: float = 0.1
    precision: str = "fp32"
    compile: bool = False
    low_memory: bool = False
    channels_last: bool | None = False

    def __post_init__(self) -> None:
        if self.cut_method not in CUT_METHODS:
            raise InputError(
                f"unknown cut method {self.cut_method!r}; valid: {' '.join(CUT_METHODS)}"
            )
        if self.cutn < 1:
            raise InputError(f"number of cut-outs must be >= 1, got {self.cutn}")
        if not self.cut_pow > 0:
            raise InputError(f"cut power must be > 0, got {self.cut_pow}")
        augments = tuple(self.augments.split() if isinstance(self.augments, str) else self.augments)
        unknown = [a for a in augments if a not in AUGMENT_CODES]
        if unknown:
            raise InputError(
                f"unknown augment code(s) {' '.join(unknown)}; "
                f"valid codes: {' '.join(AUGMENT_CODES)}"
            )
        object.__setattr__(self, "augments", augments)
        object.__setattr__(self, "optimiser", canonical_optimiser(self.optimiser))
        if not self.lr > 0:
            raise InputError(f"learning rate must be > 0, got {self.lr}")
        if self.noise_fac < 0:
            raise InputError(f"cut-out noise factor must be >= 0, got {self.noise_fac}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; valid: {' '.join(PRECISIONS)}")


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


def _augment_seed(generator: torch.Generator) -> int:
    """An integer seed for kornia's (global-RNG) augments, drawn from the step's generator."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


def _embed_cutouts(
    perceptor: Perceptor, cutouts: torch.Tensor, dtype: torch.dtype | None, compile: bool = False
) -> torch.Tensor:
    """CLIP image embeddings (float32) of cut-outs in [0, 1]. (B, 3, S, S) -> (B, D).

    open_clip ViTs run sequence-first (same values, contiguous projections: see ``speed``).
    """
    x = perceptor.normalize(cutouts)
    encode = functools.partial(compiled_call("encode_image"), perceptor) if compile else perceptor.encode_image
    with sequence_first_attention(perceptor), _autocast(cutouts.device, dtype):
        embeds = encode(x)
    return embeds.float()


class Stepper:
    """Holds the latent z (a float32 leaf tensor) and its optimiser; ``step`` runs one step."""

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
            raise InputError(
                f"latent has {z.shape[1]} channels but the codebook has {codebook.shape[1]}"
            )
        self.z_min, self.z_max = (b.to(self.device, torch.float32) for b in z_bounds(codebook))
        self.optimiser = build_optimiser(config.optimiser, [self.z], config.lr)
        self.dtype = resolve_precision(config.precision, self.device)
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None
        )
        self.augment = method_augments(
            config.cut_method, config.augments, perceptor.input_resolution
        )
        if self.augment is not None:
            self.augment = self.augment.to(self.device)
        if config.low_memory and not has_checkpointing(decoder):
            raise InputError(
                "low_memory needs a decoder with gradient checkpointing (use_checkpointing), "
                f"{type(decoder).__name__} has none; run without --low_memory"
            )
        self.channels_last = (
            channels_last_helps(self.device, self.dtype)
            if config.channels_last is None
            else bool(config.channels_last)
        )
        self._decode = (
            functools.partial(compiled_call("decode"), decoder) if config.compile else decoder.decode
        )

    @property
    def latent(self) -> torch.Tensor:
        """A detached copy of the current latent z. (1, C, h, w)"""
        return self.z.detach().clone()

    def _quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-code latent with straight-through gradient, always in float32."""
        quantize = getattr(self.decoder, "quantize_latent", None)
        if quantize is not None:
            return quantize(z)
        return vector_quantize(z, self.decoder.codebook.to(z.device, torch.float32))

    def _synth(self, z: torch.Tensor) -> torch.Tensor:
        """Image in [0, 1] of latent z (VQGAN-CLIP's ``synth``). (1, C, h, w) -> (1, 3, H, W)"""
        z_q = self._quantize(z)  # (1, C, h, w), outside autocast: exact code choice
        if self.channels_last:
            z_q = z_q.contiguous(memory_format=torch.channels_last)
        with decoder_checkpointing(self.decoder, self.config.low_memory), _autocast(
            self.device, self.dtype
        ):
            raw = self._decode(z_q)  # (1, 3, H, W) ~[-1, 1]
        return clamp_with_grad((raw.float() + 1) / 2, 0.0, 1.0)

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        """The decoded image of the current latent, without a step. (1, 3, H, W) in [0, 1]"""
        return self._synth(self.z.detach())

    def losses(
        self, image: torch.Tensor, targets: Sequence[Target], generator: torch.Generator
    ) -> list[torch.Tensor]:
        """The loss terms of ``image`` (with grad): [init term if init_weight] + one per target."""
        cfg = self.config
        aug_seed = _augment_seed(generator)
        cutouts = make_cutouts(
            image,
            cfg.cut_method,
            self.perceptor.input_resolution,
            cfg.cutn,
            cfg.cut_pow,
            augment=lambda batch: apply_augments(self.augment, batch, aug_seed),
            generator=generator,
            noise_fac=cfg.noise_fac,
        )  # (cutn, 3, S, S)
        embeds = _embed_cutouts(self.perceptor, cutouts, self.dtype, cfg.compile)  # (cutn, D)
        terms = []
        if cfg.init_weight:
            terms.append(F.mse_loss(self.z, self.z_init) * cfg.init_weight / 2)
        terms += [target_loss(embeds, t) for t in targets]
        return terms

    def step(
        self,
        targets: Sequence[Target],
        seed: int,
        extra_image_targets: Sequence[Target] = (),
    ) -> StepResult:
        """One optimisation step toward ``targets`` (+ extra ones) with all randomness from seed."""
        all_targets = [*targets, *extra_image_targets]
        if not all_targets and not self.config.init_weight:
            raise InputError("nothing to optimise toward: give at least one prompt")
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.optimiser.zero_grad(set_to_none=True)
        image = self._synth(self.z)  # (1, 3, H, W)
        terms = torch.stack(self.losses(image, all_targets, generator))  # (T,)
        total = terms.sum()
        if self.scaler is None:
            total.backward()
            self.optimiser.step()
        else:
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
        clamp_latent(self.z, self.z_min, self.z_max)
        values = terms.detach().float().cpu()  # one device sync per step for all the numbers
        return StepResult(loss=float(values.sum()), losses=values.tolist(), image=image.detach())

    def state_dict(self) -> dict[str, Any]:
        """Latent, starting latent and optimiser (and fp16 scaler) state, for checkpoints."""
        state = {
            "z": self.z.detach().clone(),
            "z_init": self.z_init.clone(),
            "optimiser": copy.deepcopy(self.optimiser.state_dict()),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (copies; the given dict is never aliased)."""
        z = state["z"]
        if z.shape != self.z.shape:
            raise InputError(
                f"saved latent has shape {tuple(z.shape)}, expected {tuple(self.z.shape)}"
            )
        with torch.no_grad():
            self.z.copy_(z)
            self.z_init.copy_(state.get("z_init", z))
        if state.get("optimiser") is not None:
            self.optimiser.load_state_dict(copy.deepcopy(state["optimiser"]))
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])


def optimise_segment(
    decoder: Decoder,
    perceptor: Perceptor,
    config: StepConfig,
    z: torch.Tensor,
    targets: Sequence[Target],
    n_steps: int,
    seed: int,
    optimiser_state: dict[str, Any] | None = None,
    on_step: Callable[[int, StepResult], None] | None = None,
    first_step_targets: Sequence[Target] = (),
    *,
    segment_index: int = 0,
    start_step: int = 0,
    z_init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Run steps start_step .. start_step + n_steps - 1 of a segment; return (z, optimiser state).

    Step i uses seed ``step_seed(seed, segment_index, i)``; ``first_step_targets`` (the previous
    segment's last frame, as Music2Video) join the targets on step 0 only. ``on_step(i, result)``
    sees every step. A pure function of its arguments: no global state is read or written.
    z_init (default: z) is the anchor of the init_weight term.
    """
    if n_steps < 0:
        raise InputError(f"number of steps must be >= 0, got {n_steps}")
    stepper = Stepper(decoder, perceptor, config, z)
    if z_init is not None:
        with torch.no_grad():
            stepper.z_init.copy_(z_init)
    if optimiser_state is not None:
        stepper.optimiser.load_state_dict(copy.deepcopy(optimiser_state))
    for i in range(start_step, start_step + n_steps):
        extra = first_step_targets if i == 0 else ()
        result = stepper.step(targets, step_seed(seed, segment_index, i), extra)
        if on_step is not None:
            on_step(i, result)
    return stepper.latent, stepper.optimiser.state_dict()


@torch.no_grad()
def embed_image_prompt(
    perceptor: Perceptor,
    image01: torch.Tensor,
    generator: torch.Generator,
    *,
    cut_method: str = "latest",
    cutn: int = 32,
    cut_pow: float = 1.0,
    augments: Sequence[str] = DEFAULT_AUGMENTS,
    noise_fac: float = 0.1,
    weight: float = 1.0,
    stop: float = -math.inf,
    precision: str = "fp32",
) -> Target:
    """Image prompt as VQGAN-CLIP: the CLIP embeddings of the image's cut-outs, one row each.

    image01: (1, 3, H, W) in [0, 1] (resize it to the output size first) -> Target (cutn, D).
    """
    device = image01.device
    augment = method_augments(cut_method, augments, perceptor.input_resolution)
    if augment is not None:
        augment = augment.to(device)
    aug_seed = _augment_seed(generator)
    cutouts = make_cutouts(
        image01.float(),
        cut_method,
        perceptor.input_resolution,
        cutn,
        cut_pow,
        augment=lambda batch: apply_augments(augment, batch, aug_seed),
        generator=generator,
        noise_fac=noise_fac,
    )  # (cutn, 3, S, S)
    embeds = _embed_cutouts(perceptor, cutouts, resolve_precision(precision, device))  # (cutn, D)
    return Target(embeds, weight, stop)
