"""Console progress of a render: a bar for the song's steps (and frames), loss lines, progress.png."""

from __future__ import annotations

import sys
from typing import Sequence

from tqdm import tqdm

from metamusic.config import Config
from metamusic.optim.stepper import StepResult
from metamusic.render.plan import Plan, Task, task_steps
from metamusic.runfolder import RunFolder
from metamusic.song.timeline import frame_schedule


class ConsoleProgress:
    """tqdm bars over all pending tasks; every ``--save_every`` song steps a loss line (and a PNG).

    Without a terminal (output piped to a file or a CI log) tqdm draws nothing, so a plain line
    reports every 10% of the work instead.
    """

    def __init__(self, config: Config, plan: Plan, run: RunFolder, pending: Sequence[Task]):
        self.config = config
        self.run = run
        steps = sum(task_steps(config, plan, t) for t in pending)
        frame_tasks = [t.segments[0] for t in pending if t.kind == "frames"]
        spans = frame_schedule(list(plan.segments), plan.fps) if frame_tasks else []
        frames = sum(spans[i].n_frames for i in frame_tasks)
        self.steps_bar = tqdm(total=steps, desc="song", unit="step", dynamic_ncols=True, disable=None) if steps else None
        self.frames_bar = tqdm(total=frames, desc="frames", unit="frame", dynamic_ncols=True, disable=None) if frames else None
        self.piped = not sys.stderr.isatty()
        self.total = {"steps": steps, "frames": frames}
        self.done = {"steps": 0, "frames": 0}
        self.reported = {"steps": 0, "frames": 0}

    def step(self, task: Task, segment: int, song_step: int, result: StepResult) -> None:
        from metamusic.render.finish import save_png

        if self.steps_bar is not None:
            self.steps_bar.update(1)
        self._advance("steps", 1)
        every = self.config.output.save_every
        if every and song_step % every == 0:
            losses = " ".join(f"{x:.4f}" for x in result.losses)
            tqdm.write(f"step {song_step} ({task.id}, segment {segment}): loss {result.loss:.4f} [{losses}]",
                       file=sys.stderr)
            if self.config.output.save_png:
                save_png(self.run.progress_png, result.image)

    def steps_done(self, n: int) -> None:
        """``n`` steps finished elsewhere (a Ray worker reports a task's steps when it ends)."""
        if self.steps_bar is not None:
            self.steps_bar.update(n)
        self._advance("steps", n)

    def frames(self, task: Task, n: int) -> None:
        if self.frames_bar is not None:
            self.frames_bar.update(n)
        self._advance("frames", n)

    def _advance(self, what: str, n: int) -> None:
        """Without a terminal: one line each time another 10% of the steps (or frames) is done."""
        self.done[what] += n
        total = self.total[what]
        if not self.piped or not total:
            return
        tenth = min(10, self.done[what] * 10 // total)
        if tenth > self.reported[what]:
            self.reported[what] = tenth
            print(f"{what}: {self.done[what]}/{total} ({10 * tenth}%)", file=sys.stderr, flush=True)

    def close(self) -> None:
        for bar in (self.steps_bar, self.frames_bar):
            if bar is not None:
                bar.close()
