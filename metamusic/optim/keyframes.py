"""Keyframe optimisation: one latent per segment, warm-started in order or independent and batched."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from metamusic.errors import InputError
from metamusic.optim.init import random_latent
from metamusic.optim.prompts import Target
from metamusic.optim.stepper import (
    StepConfig,
    Stepper,
    StepResult,
    decode_quantised,
    quantise,
    resolve_precision,
    step_seed,
)

__all__ = ["KEYFRAME_START_STEP", "decode_frames", "keyframe_start_latent", "optimise_keyframes"]

KEYFRAME_START_STEP = -2  # step index whose seed draws an independent keyframe's start latent


def keyframe_start_latent(codebook: torch.Tensor, grid: tuple[int, int], seed: int, index: int) -> torch.Tensor:
    """Random codebook tokens for an independent keyframe, drawn from seed (seed, index): (1, C, h, w)."""
    gen = torch.Generator().manual_seed(step_seed(seed, index, KEYFRAME_START_STEP))
    return random_latent(codebook.detach().float().cpu(), grid, gen).to(codebook.device)


OnKeyframeStep = Callable[[int, int, StepResult], None]


def optimise_keyframes(
    decoder: Any,
    perceptor: Any,
    step_config: StepConfig,
    z0: torch.Tensor,
    targets_per_segment: Sequence[Sequence[Target]],
    steps: int,
    seed: int,
    *,
    independent: bool = False,
    batch: int = 1,
    fresh_starts: bool = True,
    on_step: OnKeyframeStep | None = None,
    z_init: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """One keyframe latent (1, C, h, w) per segment, each after ``steps`` optimisation steps.

    Step i of keyframe k uses seed ``step_seed(seed, k, i)`` and step index i (as segment k's
    steps in the per-frame mode: the "zero" init-weight term decays within each keyframe).
    Warm-started (default): one stepper runs the keyframes in order, so keyframe k starts from
    keyframe k - 1 with its optimiser state (``z_init``, default z0, anchors a "start"
    init-weight term). Independent: keyframe 0 starts from z0, keyframe k > 0 from
    :func:`keyframe_start_latent` (or from z0 too when ``fresh_starts`` is False, e.g. with an
    init image), each with a fresh optimiser, ``batch`` of them optimised at once by
    :class:`~metamusic.optim.batched.BatchedStepper`; every batch size gives the same latents to
    float rounding. ``on_step(k, i, result)`` sees every step. No global state is read or written.
    """
    if steps < 1:
        raise InputError(f"--keyframe_steps {steps}: every keyframe needs at least one step")
    if batch < 1:
        raise InputError(f"--batch_keyframes {batch}: must be at least 1")
    if z0.ndim != 4 or z0.shape[0] != 1:
        raise InputError(f"starting latent must have shape (1, C, h, w), got {tuple(z0.shape)}")
    n = len(targets_per_segment)
    keyframes: list[torch.Tensor] = []
    if not independent:
        stepper = Stepper(decoder, perceptor, step_config, z0)
        if z_init is not None:
            with torch.no_grad():
                stepper.z_init.copy_(z_init)
        for k in range(n):
            for i in range(steps):
                result = stepper.step(targets_per_segment[k], step_seed(seed, k, i), index=i)
                if on_step is not None:
                    on_step(k, i, result)
            keyframes.append(stepper.latent)
        return keyframes

    from metamusic.optim.batched import BatchedStepper

    grid = (z0.shape[2], z0.shape[3])
    codebook = decoder.codebook.to(z0.device)

    def start(k: int) -> torch.Tensor:
        if k == 0 or not fresh_starts:
            return z0.detach()
        return keyframe_start_latent(codebook, grid, seed, k).to(z0.device, z0.dtype)

    for first in range(0, n, batch):
        chunk = list(range(first, min(n, first + batch)))
        stepper = BatchedStepper(decoder, perceptor, step_config, torch.cat([start(k) for k in chunk]))
        for i in range(steps):
            results = stepper.step(
                [targets_per_segment[k] for k in chunk], [step_seed(seed, k, i) for k in chunk], index=i
            )
            if on_step is not None:
                for k, result in zip(chunk, results):
                    on_step(k, i, result)
        keyframes += list(stepper.latents.split(1))
    return keyframes


@torch.no_grad()
def decode_frames(decoder: Any, z: torch.Tensor, precision: str = "fp32", compile: bool = False) -> torch.Tensor:
    """Images in [0, 1] of latents, no gradient: the step's quantise and decode. (T, C, h, w) -> (T, 3, H, W)"""
    return _decode_quantised(decoder, _quantise(decoder, z), resolve_precision(precision, z.device), compile)


def _quantise(decoder: Any, z: torch.Tensor) -> torch.Tensor:
    """Nearest codebook vector per position (float32): ``stepper.quantise``. (T, C, h, w) -> (T, C, h, w)"""
    return quantise(decoder, z)


def _decode_quantised(decoder: Any, z_q: torch.Tensor, dtype: torch.dtype | None, compile: bool = False) -> torch.Tensor:
    """Images of quantised latents without gradient: ``stepper.decode_quantised``. -> (T, 3, H, W)"""
    with torch.no_grad():
        return decode_quantised(decoder, z_q, dtype, compile=compile)
