"""Frame mode (Music2Video): one optimisation step per video frame, segment after segment.

A ``segment`` task optimises segment i from the latent and optimiser state that segment i - 1
left (or the render's starting latent), streams the frames it shows to its segment video, and
returns the state for segment i + 1: latent, anchor, optimiser state and the last frame as
8-bit pixels (the next segment's first-step image prompt, as Music2Video's saved PNG).
"""

from __future__ import annotations

from typing import Any

import torch

from metamusic.media.video import FrameWriter
from metamusic.optim.stepper import (
    StepResult,
    embed_image_prompt,
    optimise_segment,
    step_seed,
)
from metamusic.render.plan import Task
from metamusic.render.tasks import Context, TaskOutput
from metamusic.song.timeline import frame_schedule


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> (1, 3, H, W) uint8 on the CPU."""
    return image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_uint8` (float pixels pass through, for states of older runs)."""
    return pixels.float().div(255) if pixels.dtype == torch.uint8 else pixels.float()


def run_segment(ctx: Context, task: Task, inputs: dict[str, Any]) -> TaskOutput:
    """Optimise segment ``task.segments[0]`` and write its video; return its state and statistics."""
    job = ctx.job
    plan, cfg = job.plan, job.step
    i = task.segments[0]
    seg = plan.segments[i]
    span = frame_schedule([seg], plan.fps)[0]
    z, z_init, stepper_state, last_image = _start_state(ctx, inputs.get("state"))
    targets = job.targets[i]

    # 1. The previous segment's last frame joins the targets on the first step (Music2Video); plain
    #    VQGAN-CLIP runs (no song) change phrases without it, as VQGAN-CLIP does.
    first_targets = _first_step_targets(ctx, i, last_image, targets)

    # 2. Steps stream their frames: frame k shows step span.step_of_frame[k].
    video = ctx.scratch / f"segment_{i:05d}.mp4"
    cursor = {"frame": 0, "image": None}
    song_step0 = plan.steps_before(i)
    steps = seg.steps if targets else 0  # no prompt at all: hold the previous image
    with FrameWriter(video, plan.fps, plan.size, crf=job.config.output.crf) as writer:

        def on_step(j: int, result: StepResult) -> None:
            cursor["image"] = result.image
            while cursor["frame"] < span.n_frames and span.step_of_frame[cursor["frame"]] == j:
                writer.write(result.image)
                cursor["frame"] += 1
            ctx.progress.step(task, i, song_step0 + j, result)

        if steps:
            z, stepper_state = optimise_segment(
                ctx.models.vqgan, ctx.models.perceptor, cfg, z, targets, steps, seed=plan.seed,
                stepper_state=stepper_state, on_step=on_step, first_step_targets=first_targets,
                segment_index=i, z_init=z_init,
            )
        else:
            cursor["image"] = last_image if last_image is not None else _decode(ctx, z)
        while cursor["frame"] < span.n_frames:  # a held image fills the segment
            writer.write(cursor["image"])
            cursor["frame"] += 1
        if span.n_frames == 0:
            writer.abort()

    # 3. The state the next segment starts from.
    output = TaskOutput(steps=steps, frames=span.n_frames)
    if span.n_frames:
        output.files[f"segments/segment_{i:05d}.mp4"] = video
    output.states[f"state/after_{i:05d}.pt"] = _end_state(i, z, z_init, stepper_state, cursor["image"])
    return output


def _start_state(
    ctx: Context, state: dict[str, Any] | None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any] | None, torch.Tensor | None]:
    """(latent, anchor latent, stepper state, last image) a segment starts from: the previous
    segment's saved ``state``, or the render's starting latent when there is none."""
    job, device = ctx.job, ctx.device
    if state is None:
        z, z_init, stepper_state, last_image = job.z0.to(device), job.z0.to(device), None, None
    else:
        z, z_init = state["z"].to(device), state["z_init"].to(device)
        stepper_state = {"optimiser": state["optimiser"], "scaler": state.get("scaler")}  # optimiser + fp16 scaler
        last_image = from_uint8(state["last_image"]).to(device)
    return z, z_init, stepper_state, last_image


def _first_step_targets(
    ctx: Context, i: int, last_image: torch.Tensor | None, targets: list[Any]
) -> list[Any]:
    """Segment i's extra first-step target: the previous segment's last frame as an image prompt
    (only in song runs, when there is such a frame and the segment has targets)."""
    job = ctx.job
    first_targets = []
    if last_image is not None and targets and job.config.music.audio is not None:
        gen = torch.Generator(device=ctx.device).manual_seed(step_seed(job.plan.seed, i, -1))
        first_targets = [embed_image_prompt(ctx.models.perceptor, last_image, gen, job.step)]
    return first_targets


def _end_state(
    i: int, z: torch.Tensor, z_init: torch.Tensor, stepper_state: dict[str, Any] | None, image: torch.Tensor
) -> dict[str, Any]:
    """The state segment i + 1 starts from, on the CPU (the last image as 8-bit pixels)."""
    return {
        "segment": i,
        "z": z.detach().cpu(),
        "z_init": z_init.detach().cpu(),
        "optimiser": (stepper_state or {}).get("optimiser"),
        "scaler": (stepper_state or {}).get("scaler"),  # the fp16 loss scale carries over (None otherwise)
        "last_image": to_uint8(image),
    }


@torch.no_grad()
def _decode(ctx: Context, z: torch.Tensor) -> torch.Tensor:
    from metamusic.optim.keyframes import decode_frames

    return decode_frames(ctx.models.vqgan, z, ctx.job.step.precision)
