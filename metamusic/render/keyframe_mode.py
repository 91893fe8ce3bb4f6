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

import logging
import time
from typing import Any, Callable, Sequence

import torch

from metamusic.errors import InputError
from metamusic.optim.interpolate import INTERPOLATIONS, interpolate_latents
from metamusic.optim.keyframes import _decode_quantised, _quantise, optimise_keyframes
from metamusic.optim.prompts import Target
from metamusic.optim.stepper import StepResult, resolve_precision
from metamusic.song.timeline import Segment, frame_count, frame_schedule


def keyframe_centres(segments: Sequence[Segment]) -> list[float]:
    """The time of each segment's keyframe: the segment's midpoint, in seconds (see module doc)."""
    return [(s.start + s.end) / 2 for s in segments]



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
    from metamusic.media.video import FrameWriter

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
