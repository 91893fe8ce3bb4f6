"""Keyframe mode: optimise one latent per segment (or per N segments), then render every frame by interpolation.

Tasks: ``keyframes`` tasks optimise keyframe latents (a chain of one keyframe each when
warm-started; fixed batches of ``--batch_keyframes`` when independent) and ``frames`` task i
decodes the frames of segment i from the keyframes before, of and after its own (i - 1, i,
i + 1 with one keyframe per segment).

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

Fewer keyframes (``--keyframe_every N`` or ``line``, ours): one keyframe covers N consecutive
segments (beats in generate.py) or one lyric line (:func:`~metamusic.render.plan.keyframe_groups`),
so a song costs about N times fewer steps. Its targets are those of the segments it covers, each
segment's weighted by its share of the keyframe's time (:func:`keyframe_targets`). It sits at the
middle of its segments, except the first and last keyframes, which sit at the song's start and
end: held half-groups would be N / 2 beats without any change. The beats between two keyframes
stay visible through a pulse: frames are interpolated linearly in a warped time that runs fast
right after every segment boundary and slow before the next
(:func:`~metamusic.optim.interpolate.interpolate_on_beats`), so the image lurches forward on
every beat and drifts in between. One keyframe per segment (the default) keeps the eased
transition described above, which already moves fastest on every segment boundary.

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

from typing import Any, Sequence

import torch

from metamusic.errors import InputError
from metamusic.media.video import FrameWriter
from metamusic.optim.interpolate import interpolate_latents, interpolate_on_beats
from metamusic.optim.keyframes import (
    _decode_quantised,
    _quantise,
    decode_frames,
    independent_start,
    optimise_keyframe_batch,
    optimise_keyframe_chain,
)
from metamusic.optim.prompts import Target, mean_targets
from metamusic.optim.stepper import StepResult, resolve_precision
from metamusic.render.frame_mode import to_uint8
from metamusic.render.plan import Plan, Task
from metamusic.render.tasks import Context, TaskOutput
from metamusic.song.timeline import Segment, frame_count, frame_schedule

FRAME_BATCH = 4  # frames decoded per decoder call


def keyframe_centres(segments: Sequence[Segment], groups: Sequence[tuple[int, int]] | None = None,
                     pin_ends: bool = False) -> list[float]:
    """The time of each keyframe, in seconds: the midpoint of its segments (see module doc).

    ``groups``: [first, end) segments per keyframe (default: one per segment). ``pin_ends``: the
    first and last keyframes sit at the song's start and end instead (``--keyframe_every``).
    """
    groups = groups if groups is not None else [(i, i + 1) for i in range(len(segments))]
    times = [(segments[a].start + segments[b - 1].end) / 2 for a, b in groups]
    if pin_ends and len(times) > 1:
        times[0], times[-1] = segments[0].start, segments[-1].end
    return times


def plan_keyframe_times(plan: Plan) -> dict[int, float]:
    """Time of each keyframe of ``plan``, by its name (its first segment)."""
    groups = plan.keyframe_groups
    return dict(zip((a for a, _ in groups), keyframe_centres(plan.segments, groups, pin_ends=plan.beat_pulse)))


def segment_boundaries(segments: Sequence[Segment]) -> list[float]:
    """Every segment's start, then the last one's end: the beats the frames pulse with (seconds)."""
    return [s.start for s in segments] + [segments[-1].end] if segments else []


def keyframe_targets(segments: Sequence[Segment], targets: Sequence[Sequence[Target]], first: int,
                     end: int) -> list[Target]:
    """The targets of the keyframe covering segments [first, end): the mean of those segments'
    losses, each weighted by its duration (optim.prompts.mean_targets); one segment: its own targets."""
    return mean_targets([targets[i] for i in range(first, end)], [segments[i].duration for i in range(first, end)])


def keyframe_steps(ctx: Context) -> int:
    """Optimisation steps per keyframe (capped by --preview_steps in a preview)."""
    config = ctx.job.config
    steps = config.keyframes.per_keyframe_steps()
    return min(steps, config.output.preview_steps) if config.output.preview else steps


def segment_frame_ranges(segments: Sequence[Segment], fps: float, n_frames: int) -> list[tuple[int, int]]:
    """[first, end) output frames of each segment: timeline.frame_schedule, covering 0 .. n_frames exactly."""
    spans = frame_schedule(list(segments), fps)
    bounds = [min(max(0, s.first_frame), n_frames) for s in spans] + [n_frames]
    bounds[0] = 0
    for j in range(1, len(bounds)):
        bounds[j] = max(bounds[j], bounds[j - 1])
    return [(bounds[j], bounds[j + 1]) for j in range(len(spans))]


def run_keyframes(ctx: Context, task: Task, inputs: dict[str, Any]) -> TaskOutput:
    """Optimise the keyframes of ``task.segments``: warm-started from the previous one, or independent."""
    job, device = ctx.job, ctx.device
    plan, config = job.plan, job.config
    steps = keyframe_steps(ctx)
    vqgan, perceptor = ctx.models.vqgan, ctx.models.perceptor
    positions = plan.task_keyframes(task)
    groups = [plan.keyframe_groups[g] for g in positions]
    names = [a for a, _ in groups]  # keyframe k is named after its first segment (also its seeds' index)
    targets = [keyframe_targets(plan.segments, job.targets, a, b) for a, b in groups]
    ordinal = dict(zip(names, positions))
    z0 = job.z0.to(device)

    def on_step(k: int, i: int, result: StepResult) -> None:
        ctx.progress.step(task, k, ordinal[k] * steps + i, result)

    if config.keyframes.independent:
        fresh = not (config.prompts.init_image or config.prompts.init_noise)
        starts = torch.cat([independent_start(vqgan.codebook, z0, plan.seed, k, fresh) for k in names])
        latents = optimise_keyframe_batch(vqgan, perceptor, job.step, starts, targets, names, steps,
                                          plan.seed, on_step=on_step)
        chain_state = None
    else:  # a chain task holds one keyframe
        previous = inputs.get("previous")
        state = None if previous is None else {k: previous[k] for k in ("z", "z_init", "optimiser", "scaler")
                                               if k in previous}
        latents, chain_state = optimise_keyframe_chain(vqgan, perceptor, job.step, z0, targets, names[0],
                                                       steps, plan.seed, state=state, on_step=on_step)
    output = TaskOutput(steps=steps * len(names))
    for k, z in zip(names, latents):
        state = {"segment": k, "z": z.detach().cpu(), "image": to_uint8(decode_frames(vqgan, z, job.step.precision))}
        if chain_state is not None:  # the next keyframe continues from here
            state.update({key: _cpu(value) for key, value in chain_state.items() if key != "z"})
        output.states[f"keyframes/key_{k:05d}.pt"] = state
    return output


def _cpu(value: Any) -> Any:
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


@torch.no_grad()
def run_frames(ctx: Context, task: Task, inputs: dict[str, Any]) -> TaskOutput:
    """Decode segment i's frames from the keyframes before, of and after its own, and write its video.

    Frame f (time f / fps) is the interpolated latent at that time (eased, or pulsing with the
    segment boundaries when keyframes span several segments), quantised and decoded in batches of
    FRAME_BATCH; a frame whose codes equal the previous frame's reuses its image.
    """
    job, device = ctx.job, ctx.device
    plan, config = job.plan, job.config
    i = task.segments[0]
    n_frames = frame_count(plan.duration, plan.fps)
    f0, f1 = segment_frame_ranges(plan.segments, plan.fps, n_frames)[i]
    output = TaskOutput(frames=f1 - f0)
    if f1 <= f0:
        return output  # a segment shorter than a frame owns none
    near = sorted(inputs["keyframes"])  # names (first segments) of the keyframes around segment i
    stack = torch.cat([inputs["keyframes"][k].to(device) for k in near])  # (K, C, h, w)
    centres = plan_keyframe_times(plan)
    times = [centres[k] for k in near]
    beats = segment_boundaries(plan.segments) if plan.beat_pulse else None
    dtype = resolve_precision(job.step.precision, device)
    video = ctx.scratch / f"segment_{i:05d}.mp4"
    method = config.keyframes.interpolation
    prev_codes: torch.Tensor | None = None  # (1, C, h, w) quantised latent of the previous frame
    prev_image: torch.Tensor | None = None  # (1, 3, H, W)
    with FrameWriter(video, plan.fps, plan.size, crf=config.output.crf) as writer:
        for b0 in range(f0, f1, FRAME_BATCH):
            frames = range(b0, min(f1, b0 + FRAME_BATCH))
            moments = [f / plan.fps for f in frames]
            if beats is None:
                z = interpolate_latents(stack, times, moments, method)  # (T, C, h, w)
            else:
                z = interpolate_on_beats(stack, times, moments, beats, method)  # (T, C, h, w)
            z_q = _quantise(ctx.models.vqgan, z)  # (T, C, h, w)
            before = [prev_codes] + [z_q[j : j + 1] for j in range(z_q.shape[0] - 1)]
            new = [j for j in range(z_q.shape[0]) if before[j] is None or not torch.equal(z_q[j : j + 1], before[j])]
            slot = {j: r for r, j in enumerate(new)}
            images = _decode_quantised(ctx.models.vqgan, z_q[new], dtype) if new else None  # (len(new), 3, H, W)
            for j in range(z_q.shape[0]):
                if j in slot:
                    prev_image = images[slot[j] : slot[j] + 1]
                writer.write(prev_image)
            prev_codes = z_q[-1:]
            ctx.progress.frames(task, z_q.shape[0])
    output.files[f"segments/segment_{i:05d}.mp4"] = video
    return output


def check_keyframe_settings(config: Any) -> None:
    """InputError for keyframe settings no render can use."""
    from metamusic.optim.interpolate import INTERPOLATIONS

    kcfg = config.keyframes
    if kcfg.interpolation not in INTERPOLATIONS:
        raise InputError(f"--interpolation {kcfg.interpolation}: expected one of {' '.join(INTERPOLATIONS)}")
    if kcfg.per_keyframe_steps() < 1:
        raise InputError(f"--keyframe_steps {kcfg.steps}: every keyframe needs at least one step")
    if kcfg.batch < 1:
        raise InputError(f"--batch_keyframes {kcfg.batch}: must be at least 1")
