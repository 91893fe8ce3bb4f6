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

__all__ = [
    "KEYFRAME_START_STEP",
    "decode_frames",
    "independent_start",
    "keyframe_start_latent",
    "optimise_keyframe_batch",
    "optimise_keyframe_chain",
    "optimise_keyframes",
]

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
    if not independent:
        state = None if z_init is None else {"z": z0, "z_init": z_init}
        keyframes, _ = optimise_keyframe_chain(decoder, perceptor, step_config, z0, targets_per_segment, 0, steps,
                                               seed, state=state, on_step=on_step)
        return keyframes
    codebook = decoder.codebook.to(z0.device)
    keyframes: list[torch.Tensor] = []
    for first in range(0, n, batch):
        chunk = list(range(first, min(n, first + batch)))
        starts = torch.cat([independent_start(codebook, z0, seed, k, fresh_starts) for k in chunk])
        keyframes += optimise_keyframe_batch(decoder, perceptor, step_config, starts,
                                             [targets_per_segment[k] for k in chunk], chunk, steps, seed,
                                             on_step=on_step)
    return keyframes


def independent_start(codebook: torch.Tensor, z0: torch.Tensor, seed: int, index: int, fresh: bool) -> torch.Tensor:
    """Where independent keyframe ``index`` starts: z0 for keyframe 0 (or every keyframe when not
    ``fresh``, e.g. with an init image), else :func:`keyframe_start_latent`. (1, C, h, w)"""
    if index == 0 or not fresh:
        return z0.detach()
    grid = (z0.shape[2], z0.shape[3])
    return keyframe_start_latent(codebook.to(z0.device), grid, seed, index).to(z0.device, z0.dtype)


def optimise_keyframe_chain(
    decoder: Any,
    perceptor: Any,
    step_config: StepConfig,
    z0: torch.Tensor,
    targets: Sequence[Sequence[Target]],
    first: int,
    steps: int,
    seed: int,
    *,
    state: dict[str, Any] | None = None,
    on_step: OnKeyframeStep | None = None,
) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """Warm-started keyframes ``first``, ``first + 1``, ...: each continues from the one before.

    Starts from ``state`` (a :meth:`Stepper.state_dict`, e.g. the previous keyframe's) or from
    z0 with a fresh optimiser. Returns the keyframes and the state after the last one, so a
    chain split into pieces gives the same latents as one run.
    """
    stepper = Stepper(decoder, perceptor, step_config, z0 if state is None else state["z"].to(z0.device))
    if state is not None:
        stepper.load_state_dict({k: v.to(z0.device) if isinstance(v, torch.Tensor) else v for k, v in state.items()})
    keyframes = []
    for j, keyframe_targets in enumerate(targets):
        k = first + j
        for i in range(steps):
            result = stepper.step(keyframe_targets, step_seed(seed, k, i), index=i)
            if on_step is not None:
                on_step(k, i, result)
        keyframes.append(stepper.latent)
    return keyframes, stepper.state_dict()


def optimise_keyframe_batch(
    decoder: Any,
    perceptor: Any,
    step_config: StepConfig,
    starts: torch.Tensor,
    targets: Sequence[Sequence[Target]],
    indices: Sequence[int],
    steps: int,
    seed: int,
    *,
    on_step: OnKeyframeStep | None = None,
) -> list[torch.Tensor]:
    """Independent keyframes ``indices`` from ``starts`` (B, C, h, w), optimised as one batch."""
    from metamusic.optim.batched import BatchedStepper

    stepper = BatchedStepper(decoder, perceptor, step_config, starts)
    for i in range(steps):
        results = stepper.step(list(targets), [step_seed(seed, k, i) for k in indices], index=i)
        if on_step is not None:
            for k, result in zip(indices, results):
                on_step(k, i, result)
    return list(stepper.latents.split(1))


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
