"""Keyframe mode: optimise one latent per segment, then render every frame by interpolation.

The method of the "Making music videos with AI" write-up (CMU 16-726, 2022): instead of one
optimisation step per video frame (Music2Video), each segment gets one keyframe latent
optimised for ``N`` steps toward the segment's targets, and the frames between keyframes are
decoded from interpolated latents. The cost is ``K * N`` steps plus one decoder pass per frame
(no CLIP, no backward), so a smooth 30-60 fps video needs far fewer steps.

Where keyframes sit in time: keyframe k sits at the *midpoint* of segment k
(:func:`keyframe_centres`). So a segment's own keyframe dominates every frame of that segment
(interpolation weight above one half), the transition to the next keyframe is centred on the
segment boundary (a lyric onset or a beat), and with easing the image moves fastest exactly at
that boundary and rests at each keyframe. Frames before the first keyframe (the first half of
segment 0) and after the last one (the second half of the last segment) hold that keyframe.
Placing keyframe k at segment k's start instead would make each segment drift toward the *next*
segment's content and leave the last segment frozen.

Slerp versus lerp: the frames are quantised after interpolation (nearest codebook vector per
position, as in every optimisation step), so a latent's norm matters. Two latents that are far
apart are nearly orthogonal (the latent has C * h * w dimensions), so their linear midpoint has
only about 1/sqrt(2) of their norm; its positions then snap to the low-norm codes near the
codebook's centre and the middle of every transition turns flat and grey. Slerp rotates the
direction on the sphere and interpolates the norm linearly, so the midpoint keeps the endpoints'
norm and keeps picking codes of the same kind as the keyframes'. Measured (CPU, seed 0) on a
16384 x 256 codebook of Gaussian rows scaled by U(0.2, 1.5) (code norms vary, as in trained
codebooks) with two random-token 16 x 16 latents: at t = 0.5 the lerp latent has 0.71 of the
keyframes' norm and 68% of its positions snap to codes in the codebook's lowest-norm quarter
(quantised norm 0.65); slerp keeps the norm (1.00) and 8% (quantised norm 1.20). With plain
Gaussian rows: 24% versus 6%. At t = 0.25 both pick the nearer keyframe's codes. Warm-started
keyframes are close to each other, where slerp and lerp agree; slerp falls back to lerp for
(anti)parallel latents. (A synthetic codebook: a real checkpoint's numbers will differ.)
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from typing import Any, Callable, Sequence

import torch

from metamusic.errors import InputError
from metamusic.optim.init import random_latent
from metamusic.optim.prompts import Target
from metamusic.optim.stepper import StepConfig, Stepper, StepResult, resolve_precision, step_seed
from metamusic.timeline import Segment, frame_count, frame_schedule

__all__ = [
    "EASINGS",
    "INTERPOLATIONS",
    "KEYFRAME_START_STEP",
    "decode_frames",
    "ease",
    "interpolate_latents",
    "interpolation_position",
    "keyframe_centres",
    "keyframe_start_latent",
    "lerp",
    "optimise_keyframes",
    "render_keyframe_video",
    "render_keyframes",
    "segment_frame_ranges",
    "slerp",
]

INTERPOLATIONS = ("slerp", "lerp")
EASINGS = ("smoothstep", "cosine", "linear")
KEYFRAME_START_STEP = -2  # step index whose seed draws an independent keyframe's start latent
_PARALLEL_SIN = 1e-4  # below this sin(angle) slerp falls back to lerp


# ---------------------------------------------------------------------------------------------
# Pure math


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Linear interpolation a + t (b - a); t a float or a tensor broadcastable to a."""
    return a + (b - a) * t


def _per_sample_t(t: float | torch.Tensor, n: int, ref: torch.Tensor) -> torch.Tensor:
    """t as an (n, 1) float tensor: one interpolation position per flattened sample."""
    t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
    if t.ndim == 0:
        return t.expand(n).reshape(n, 1)
    if t.numel() != n:
        raise InputError(f"slerp: got {t.numel()} positions for {n} samples")
    return t.reshape(n, 1)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation per sample (Shoemake 1985): direction on the great circle, norm linear.

    a, b: (B, ...) flattened per sample (a 1-d tensor is one sample); t: float or (B,). With equal
    norms this is the classic slerp and keeps the norm at every t; when the two directions are
    nearly parallel or antiparallel (sin of the angle < 1e-4) it falls back to :func:`lerp`.
    """
    if a.shape != b.shape:
        raise InputError(f"slerp: shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")
    shape = a.shape
    work = torch.promote_types(a.dtype, torch.float32)
    a2 = a.reshape(1, -1) if a.ndim <= 1 else a.reshape(a.shape[0], -1)  # (B, N)
    b2 = b.reshape(a2.shape)
    a64, b64 = a2.double(), b2.double()
    tt = _per_sample_t(t, a2.shape[0], a64)  # (B, 1)
    na = a64.norm(dim=1, keepdim=True)  # (B, 1)
    nb = b64.norm(dim=1, keepdim=True)  # (B, 1)
    ua = a64 / na.clamp_min(1e-12)
    ub = b64 / nb.clamp_min(1e-12)
    cos = (ua * ub).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)  # (B, 1)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    safe = sin.abs() > _PARALLEL_SIN
    sin_safe = torch.where(safe, sin, torch.ones_like(sin))
    direction = (torch.sin((1 - tt) * theta) * ua + torch.sin(tt * theta) * ub) / sin_safe  # (B, N) unit
    curved = direction * lerp(na, nb, tt)  # (B, N)
    out = torch.where(safe, curved, lerp(a64, b64, tt))
    return out.to(work).reshape(shape)


def ease(t: float | torch.Tensor, kind: str = "smoothstep") -> float | torch.Tensor:
    """Easing of t in [0, 1] (clamped): smoothstep 3t^2 - 2t^3, cosine (1 - cos(pi t)) / 2, or linear.

    Both non-linear easings have zero slope at 0 and 1, so the image rests at each keyframe and
    moves fastest halfway between two keyframes (a segment boundary, see the module doc).
    """
    if kind not in EASINGS:
        raise InputError(f"unknown easing {kind!r}; valid: {' '.join(EASINGS)}")
    if isinstance(t, torch.Tensor):
        t = t.clamp(0.0, 1.0)
        if kind == "smoothstep":
            return t * t * (3 - 2 * t)
        if kind == "cosine":
            return (1 - torch.cos(math.pi * t)) / 2
        return t
    t = min(1.0, max(0.0, float(t)))
    if kind == "smoothstep":
        return t * t * (3 - 2 * t)
    if kind == "cosine":
        return (1 - math.cos(math.pi * t)) / 2
    return t


def keyframe_centres(segments: Sequence[Segment]) -> list[float]:
    """The time of each segment's keyframe: the segment's midpoint, in seconds (see module doc)."""
    return [(s.start + s.end) / 2 for s in segments]


def interpolation_position(times: Sequence[float], t: float) -> tuple[int, float]:
    """(i, u): time t lies a fraction u in [0, 1) of the way from keyframe i to keyframe i + 1.

    Before the first keyframe time it is (0, 0.0) and from the last one on (K - 1, 0.0): those
    frames hold the first / last keyframe. ``times`` must be non-decreasing.
    """
    if not times:
        raise InputError("interpolation needs at least one keyframe time")
    if t <= times[0]:
        return 0, 0.0
    if t >= times[-1]:
        return len(times) - 1, 0.0
    i = bisect.bisect_right(times, t) - 1  # times[i] <= t < times[i + 1]
    span = times[i + 1] - times[i]
    return i, (t - times[i]) / span if span > 0 else 0.0


def interpolate_latents(
    keyframes: Sequence[torch.Tensor] | torch.Tensor,
    times: Sequence[float],
    t: float | Sequence[float],
    method: str = "slerp",
    easing: str = "smoothstep",
) -> torch.Tensor:
    """The latent at time(s) t between neighbouring keyframes, eased: (1 or T, C, h, w).

    keyframes: K tensors (1, C, h, w) or (C, h, w), or one (K, C, h, w) tensor; times: K
    non-decreasing keyframe times. A scalar t gives (1, C, h, w); a sequence of T times (T, C, h, w).
    """
    if method not in INTERPOLATIONS:
        raise InputError(f"unknown interpolation {method!r}; valid: {' '.join(INTERPOLATIONS)}")
    if isinstance(keyframes, torch.Tensor):
        stack = keyframes  # (K, C, h, w)
    else:
        stack = torch.cat([k if k.ndim == 4 else k[None] for k in keyframes])  # (K, C, h, w)
    if stack.ndim != 4:
        raise InputError(f"keyframes must be latents (K, C, h, w), got {tuple(stack.shape)}")
    if len(times) != stack.shape[0]:
        raise InputError(f"{stack.shape[0]} keyframes but {len(times)} keyframe times")
    if any(b < a for a, b in zip(times, times[1:])):
        raise InputError("keyframe times must be non-decreasing")
    ts = [float(t)] if isinstance(t, (int, float)) else [float(x) for x in t]
    if not ts:
        return stack[:0]
    pos = [interpolation_position(times, x) for x in ts]
    lo = torch.tensor([i for i, _ in pos], device=stack.device)
    hi = (lo + 1).clamp(max=stack.shape[0] - 1)
    u = torch.tensor([ease(w, easing) for _, w in pos], dtype=torch.float64)  # (T,)
    a, b = stack[lo], stack[hi]  # (T, C, h, w)
    if method == "slerp":
        return slerp(a, b, u.to(stack.device))
    return lerp(a, b, u.to(stack.device, stack.dtype)[:, None, None, None])


# ---------------------------------------------------------------------------------------------
# Optimisation


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

    Step i of keyframe k uses seed ``step_seed(seed, k, i)`` (as segment k's steps in the
    per-frame mode). Warm-started (default): one stepper runs the keyframes in order, so keyframe
    k starts from keyframe k - 1 with its optimiser state (``z_init``, default z0, anchors the
    init_weight term). Independent: keyframe 0 starts from z0, keyframe k > 0 from
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
                result = stepper.step(targets_per_segment[k], step_seed(seed, k, i))
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
            results = stepper.step([targets_per_segment[k] for k in chunk], [step_seed(seed, k, i) for k in chunk])
            if on_step is not None:
                for k, result in zip(chunk, results):
                    on_step(k, i, result)
        keyframes += list(stepper.latents.split(1))
    return keyframes


# ---------------------------------------------------------------------------------------------
# Frames


@torch.no_grad()
def decode_frames(decoder: Any, z: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Images in [0, 1] of latents: quantise, decode, map to [0, 1]. (T, C, h, w) -> (T, 3, H, W)."""
    return _decode_quantised(decoder, _quantise(decoder, z), resolve_precision(precision, z.device))


def _quantise(decoder: Any, z: torch.Tensor) -> torch.Tensor:
    """Nearest codebook vector per position (float32). (T, C, h, w) -> (T, C, h, w)"""
    from metamusic.ops import vector_quantize

    quantize = getattr(decoder, "quantize_latent", None)
    return quantize(z.float()) if quantize is not None else vector_quantize(z.float(), decoder.codebook.float())


def _decode_quantised(decoder: Any, z_q: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """decoder.decode_image, or clamp((decode + 1) / 2), under autocast to ``dtype``. -> (T, 3, H, W)"""
    from metamusic.optim.stepper import _autocast

    with _autocast(z_q.device, dtype):
        if hasattr(decoder, "decode_image"):
            image = decoder.decode_image(z_q)
        else:
            image = decoder.decode(z_q).add(1).div(2)
    return image.float().clamp(0, 1)  # (T, 3, H, W)


def segment_frame_ranges(segments: Sequence[Segment], fps: float, n_frames: int) -> list[tuple[int, int]]:
    """[first, end) output frames of each segment: timeline.frame_schedule, covering 0 .. n_frames exactly."""
    spans = frame_schedule(list(segments), fps)
    bounds = [min(max(0, s.first_frame), n_frames) for s in spans] + [n_frames]
    bounds[0] = 0
    for j in range(1, len(bounds)):
        bounds[j] = max(bounds[j], bounds[j - 1])
    return [(bounds[j], bounds[j + 1]) for j in range(len(spans))]


@torch.no_grad()
def render_keyframe_video(
    decoder: Any,
    keyframes: Sequence[torch.Tensor],
    times: Sequence[float],
    segments: Sequence[Segment],
    fps: float,
    duration: float,
    run: Any,
    size: tuple[int, int],
    *,
    method: str = "slerp",
    easing: str = "smoothstep",
    frame_batch: int = 4,
    precision: str = "fp32",
    crf: int = 17,
    on_segment: Callable[[int, torch.Tensor | None], None] | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write all round(duration * fps) frames, one video per segment at ``run.segment_video(i)``.

    Frame f (time f / fps) is the interpolated latent at that time, quantised and decoded in
    batches of ``frame_batch`` under no_grad; a frame whose codes equal the previous frame's
    reuses its image (only the codes reach the decoder). Segment i owns the frames of
    timeline.frame_schedule; a segment owning no frame gets no video. ``on_segment(i, last
    image or None)`` runs after each segment. Returns {"frames", "decoded", "io_wait_seconds"}.
    """
    from metamusic.video import FrameWriter

    if frame_batch < 1:
        raise InputError(f"frame batch must be >= 1, got {frame_batch}")
    total = frame_count(duration, fps)
    stack = torch.cat([k if k.ndim == 4 else k[None] for k in keyframes])  # (K, C, h, w)
    dtype = resolve_precision(precision, stack.device)
    ranges = segment_frame_ranges(segments, fps, total)
    prev_codes: torch.Tensor | None = None  # (1, C, h, w) quantised latent of the previous frame
    prev_image: torch.Tensor | None = None  # (1, 3, H, W)
    written = decoded = 0
    wait = 0.0
    for seg, (f0, f1) in zip(segments, ranges):
        if f1 <= f0:
            if on_segment is not None:
                on_segment(seg.index, None)
            continue
        with FrameWriter(run.segment_video(seg.index), fps, size, crf=crf) as writer:
            for b0 in range(f0, f1, frame_batch):
                frames = range(b0, min(f1, b0 + frame_batch))
                z = interpolate_latents(stack, times, [f / fps for f in frames], method, easing)  # (T, C, h, w)
                z_q = _quantise(decoder, z)  # (T, C, h, w)
                slot: dict[int, int] = {}
                new = []  # frames whose codes differ from the frame before them
                for j in range(z_q.shape[0]):
                    before = z_q[j - 1 : j] if j else prev_codes
                    if before is None or not torch.equal(z_q[j : j + 1], before):
                        new.append(j)
                if new:
                    images = _decode_quantised(decoder, z_q[new], dtype)  # (len(new), 3, H, W)
                    slot = {j: r for r, j in enumerate(new)}
                    decoded += len(new)
                for j in range(z_q.shape[0]):
                    if j in slot:
                        prev_image = images[slot[j] : slot[j] + 1]  # (1, 3, H, W)
                    writer.write(prev_image)
                prev_codes = z_q[-1:]
                written += z_q.shape[0]
                if on_frames is not None:
                    on_frames(z_q.shape[0])
            wait += writer.wait_seconds
        if on_segment is not None:
            on_segment(seg.index, prev_image)
    return {"frames": written, "decoded": decoded, "io_wait_seconds": wait}


# ---------------------------------------------------------------------------------------------
# Entry point for render.generate


def render_keyframes(
    config: Any, inputs: Any, run: Any, segments: Sequence[Segment], targets: Sequence[Sequence[Target]],
    models: Any, log: logging.Logger,
) -> dict[str, Any]:
    """Keyframe mode of render.generate: optimise the keyframes, write every segment's video and state.

    Returns {"keyframes", "steps_per_keyframe", "total_steps", "frames", "decoded_frames",
    "step_seconds", "frame_seconds", "io_wait_seconds"}. Always renders every segment (no partial resume).
    """
    from tqdm import tqdm

    from metamusic.render import initial_latent, step_config

    kcfg = config.keyframes
    if kcfg.interpolation not in INTERPOLATIONS:
        raise InputError(f"--interpolation {kcfg.interpolation}: expected one of {' '.join(INTERPOLATIONS)}")
    if kcfg.steps < 1:
        raise InputError(f"--keyframe_steps {kcfg.steps}: every keyframe needs at least one step")
    if kcfg.batch < 1:
        raise InputError(f"--batch_keyframes {kcfg.batch}: must be at least 1")
    if kcfg.batch > 1 and not kcfg.independent:
        log.warning("--batch_keyframes %d has no effect without --independent_keyframes "
                    "(warm-started keyframes run one after another)", kcfg.batch)
    fps = float(config.output.fps)
    duration = float(inputs.duration) if inputs.audio is not None else float(segments[-1].end)
    n_key, n_steps = len(segments), int(kcfg.steps)
    n_frames = frame_count(duration, fps)
    log.info("keyframe mode: %d keyframes x %d steps = %d optimisation steps, %d frames",
             n_key, n_steps, n_key * n_steps, n_frames)

    seed = int(config.seed)
    device = torch.device(config.device)
    z0 = initial_latent(config, inputs, models, torch.Generator().manual_seed(seed))
    scfg = step_config(config)
    steps_done = {"n": 0}
    bar = tqdm(total=n_key * n_steps, desc="keyframes", unit="step", dynamic_ncols=True, disable=None)

    def on_step(k: int, i: int, result: StepResult) -> None:
        steps_done["n"] += 1
        bar.update(1)
        if config.output.save_every and (i % config.output.save_every == 0 or i == n_steps - 1):
            log.debug("keyframe %d step %d loss %.4f", k, i, result.loss)

    t0 = time.perf_counter()
    try:
        keyframes = optimise_keyframes(
            models.vqgan, models.perceptor, scfg, z0.to(device), [list(t) for t in targets], n_steps, seed,
            independent=kcfg.independent, batch=kcfg.batch,
            fresh_starts=not (config.prompts.init_image or config.prompts.init_noise), on_step=on_step,
        )
    finally:
        bar.close()
    step_seconds = time.perf_counter() - t0

    times = keyframe_centres(segments)
    frames_bar = tqdm(total=n_frames, desc="frames", unit="frame", dynamic_ncols=True, disable=None)

    def on_segment(index: int, last_image: torch.Tensor | None) -> None:
        if last_image is None:
            return  # a segment shorter than a frame: no video, so it does not count as finished
        run.save_state(index, {"segment": index, "z": keyframes[index].detach().cpu(),
                               "z_init": z0.detach().cpu(), "optimiser": None,
                               "last_image": last_image.detach().cpu()})

    t1 = time.perf_counter()
    try:
        out = render_keyframe_video(
            models.vqgan, keyframes, times, segments, fps, duration, run, tuple(inputs.size),
            method=kcfg.interpolation, precision=scfg.precision, crf=config.output.crf,
            on_segment=on_segment, on_frames=frames_bar.update,
        )
    finally:
        frames_bar.close()
    frame_seconds = time.perf_counter() - t1
    stats = {
        "keyframes": n_key,
        "steps_per_keyframe": n_steps,
        "total_steps": steps_done["n"],
        "frames": out["frames"],
        "decoded_frames": out["decoded"],
        "step_seconds": step_seconds,
        "frame_seconds": frame_seconds,
        "io_wait_seconds": out["io_wait_seconds"],
    }
    log.info("keyframe mode: %d keyframes x %d steps = %d optimisation steps (%.1f s), %d frames "
             "(%d decoded, the rest repeat their predecessor's codes; %.1f s)",
             n_key, n_steps, stats["total_steps"], step_seconds, stats["frames"], out["decoded"], frame_seconds)
    return stats
