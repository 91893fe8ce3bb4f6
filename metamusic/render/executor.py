"""Executors: what runs a render's tasks. The local one runs them in order in this process.

An executor gets the job, the pending tasks (in an order that satisfies their ``needs``), a
function that loads a task's inputs from the run folder and a function that records a finished
task there. A distributed executor runs the same :func:`execute` on other workers and brings the
outputs back to the driver, which alone writes the run folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch

from metamusic.render import frame_mode, keyframe_mode
from metamusic.render.plan import Task
from metamusic.render.prepare import Models
from metamusic.render.tasks import Context, Job, NoProgress, Progress, TaskOutput

RUNNERS = {"segment": frame_mode.run_segment, "keyframes": keyframe_mode.run_keyframes,
           "frames": keyframe_mode.run_frames}


def execute(ctx: Context, task: Task, inputs: dict[str, Any]) -> TaskOutput:
    """Run one task of any kind in this process."""
    runner = RUNNERS[task.kind]
    t0 = time.perf_counter()
    output = runner(ctx, task, inputs)
    output.seconds = time.perf_counter() - t0
    return output


Record = Callable[[Task, TaskOutput], None]
LoadInputs = Callable[[Task], dict[str, Any]]


class Executor(Protocol):
    """Runs a render's pending tasks, each after the tasks it needs, and records each one."""

    def run(self, job: Job, tasks: Sequence[Task], load: LoadInputs, record: Record) -> None: ...


class LocalExecutor:
    """Runs the tasks one after another in this process, with the models already loaded."""

    def __init__(self, models: Models, device: torch.device, scratch: Path, progress: Progress | None = None):
        self.models = models
        self.device = device
        self.scratch = scratch
        self.progress = progress or NoProgress()

    def run(self, job: Job, tasks: Sequence[Task], load: LoadInputs, record: Record) -> None:
        ctx = Context(job, self.models, self.device, self.scratch, self.progress)
        for task in tasks:
            record(task, execute(ctx, task, load(task)))
