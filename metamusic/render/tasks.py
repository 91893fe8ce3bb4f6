"""What a task is given and what it returns.

A task is a function of (context, task, inputs) returning a :class:`TaskOutput`: files it wrote
into its scratch folder, tensors to save, and its statistics. It never writes into the run
folder itself: the driver records each finished task there (:meth:`RunFolder.record_task`), so
an executor that runs tasks elsewhere (other processes, other machines) only has to bring the
outputs back. The inputs of a task are the recorded outputs of the tasks it ``needs``, loaded by
the driver (:func:`load_inputs`). Executors (``metamusic.render.executor``) run tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.optim.prompts import Target
from metamusic.optim.stepper import StepConfig, StepResult
from metamusic.render.plan import Plan, Task
from metamusic.render.prepare import Models
from metamusic.runfolder import RunFolder


@dataclass
class Job:
    """What every task of one render reads besides the models (picklable, device-free tensors)."""

    config: Config
    plan: Plan
    targets: list[list[Target]]  # per segment
    z0: torch.Tensor  # (1, C, h, w) the render's starting latent
    step: StepConfig


class Progress(Protocol):
    """Where tasks report progress (bars, logs, the latest image)."""

    def step(self, task: Task, segment: int, song_step: int, result: StepResult) -> None: ...

    def frames(self, task: Task, n: int) -> None: ...


class NoProgress:
    def step(self, task: Task, segment: int, song_step: int, result: StepResult) -> None:
        pass

    def frames(self, task: Task, n: int) -> None:
        pass


@dataclass
class Context:
    """One process's view of a job: the job, its models on a device, and a scratch folder."""

    job: Job
    models: Models
    device: torch.device
    scratch: Path
    progress: Progress = field(default_factory=NoProgress)


@dataclass
class TaskOutput:
    """A finished task: files in the scratch folder (by run-folder name), states to save, statistics."""

    files: dict[str, Path] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: int = 0
    frames: int = 0
    seconds: float = 0.0

    @property
    def stats(self) -> dict[str, Any]:
        return {"steps": self.steps, "frames": self.frames, "seconds": round(self.seconds, 4)}


def load_inputs(run: RunFolder, plan: Plan, task: Task) -> dict[str, Any]:
    """The recorded outputs a task starts from: the previous state or keyframe(s) it needs.

    A frames task gets the latents of the keyframes before, of and after its segment's, by the
    name of their first segment (with one keyframe per segment: segments i - 1, i, i + 1).
    """
    i = task.segments[0]
    if task.kind == "segment":
        state = run.load_state(i - 1) if i else None
        if i and state is None:
            raise InputError(f"{run.state_path(i - 1)}: missing; segment {i} starts from it "
                             f"(re-render with --from_segment 0)")
        return {"state": state}
    groups = plan.keyframe_groups  # keyframe g is named after its first segment, groups[g][0]
    g = plan.group_of(i)
    if task.kind == "keyframes":
        return {"previous": run.load_keyframe(groups[g - 1][0]) if task.needs else None}
    keys = {}
    for h in (g - 1, g, g + 1):
        if 0 <= h < len(groups):
            k = groups[h][0]
            state = run.load_keyframe(k)
            if state is None:
                raise RuntimeError(f"{run.keyframe_path(k)}: keyframe missing for task {task.id}")
            keys[k] = state["z"]
    return {"keyframes": keys}
