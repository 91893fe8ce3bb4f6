"""Step 2 of a render: the song's timeline and the plan of tasks that renders it.

A render is a list of :class:`Task` s, each a unit of work with explicit inputs (the tasks it
``needs``) and outputs (files and states that the run folder records when it finishes):

- frame mode (Music2Video, one optimisation step per frame): one ``segment`` task per segment,
  a chain, since each starts from the previous one's latent and optimiser state;
- keyframe mode: ``keyframes`` tasks (warm-started keyframes are a chain of one keyframe each;
  independent keyframes come in fixed batches of ``--batch_keyframes`` that need nothing), then
  one ``frames`` task per segment that decodes the frames between its neighbouring keyframes.
  A keyframe covers one segment, or with ``--keyframe_every`` N consecutive segments or one
  lyric line (:func:`keyframe_groups`); it is named after its first segment (``key_00004.pt``,
  task ``keyframes_00004``) and its task's ``segments`` are all the segments it covers, so
  ``--from_segment``, the task records and the storyboard checks work per segment as before.

The plan is a pure function of the configuration and the storyboard, so a resumed or
distributed render rebuilds exactly the same tasks.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.render.inputs import Inputs
from metamusic.song.timeline import Segment

TASK_KINDS = ("segment", "keyframes", "frames")


@dataclass(frozen=True)
class Task:
    """One resumable unit of work: ``kind`` over ``segments``, after the tasks in ``needs``."""

    kind: str  # one of TASK_KINDS
    segments: tuple[int, ...]
    needs: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Stable name, also the file name of its record in the run folder: ``segment_00003``."""
        return f"{self.kind}_{self.segments[0]:05d}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "segments": list(self.segments), "needs": list(self.needs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        return cls(str(d["kind"]), tuple(int(i) for i in d["segments"]), tuple(str(n) for n in d.get("needs", ())))


@dataclass(frozen=True)
class Analysis:
    """What the song's analysis found: beat times and the volume envelope (for timeline.png)."""

    beats: tuple[float, ...] = ()
    envelope_times: tuple[float, ...] = ()
    envelope_values: tuple[float, ...] = ()


@dataclass(frozen=True)
class Plan:
    """Everything a task needs to know about the render besides the models: serialisable."""

    segments: tuple[Segment, ...]
    tasks: tuple[Task, ...]
    fps: float
    duration: float  # seconds of video (the song's length; plain runs: the last segment's end)
    size: tuple[int, int]
    keyframes: bool
    seed: int
    analysis: Analysis = field(default_factory=Analysis, compare=False)
    groups: tuple[tuple[int, int], ...] = ()  # keyframe mode: [first, end) segments per keyframe; (): one each
    beat_pulse: bool = False  # keyframe mode: frames between keyframes pulse with the beats (--keyframe_every)

    @property
    def task_by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}

    @property
    def keyframe_groups(self) -> tuple[tuple[int, int], ...]:
        """[first, end) segments of every keyframe, in order (keyframe mode; () in frame mode)."""
        if not self.keyframes:
            return ()
        return self.groups or tuple((i, i + 1) for i in range(len(self.segments)))

    def group_of(self, segment: int) -> int:
        """Position of the keyframe that covers ``segment``."""
        return bisect.bisect_right([a for a, _ in self.keyframe_groups], segment) - 1

    def task_keyframes(self, task: Task) -> list[int]:
        """Positions of the keyframes a ``keyframes`` task optimises (those whose first segment it holds)."""
        held = set(task.segments)
        return [g for g, (a, _) in enumerate(self.keyframe_groups) if a in held]

    def to_dict(self) -> dict[str, Any]:
        out = {"fps": self.fps, "duration": self.duration, "size": list(self.size), "keyframes": self.keyframes,
               "seed": self.seed, "tasks": [t.to_dict() for t in self.tasks]}
        if self.groups:
            out["keyframe_groups"] = [list(g) for g in self.groups]
        return out

    def steps_before(self, index: int) -> int:
        """Optimisation steps of the segments before ``index`` (the song step of its first step)."""
        return sum(s.steps for s in self.segments[:index])


def song_timeline(config: Config, inputs: Inputs) -> tuple[list[Segment], Analysis]:
    """The song's segments and what drives each (see metamusic.song.timeline), and its analysis."""
    from metamusic.song import analysis, timeline

    music = config.music
    if inputs.audio is None:
        return plain_segments(config), Analysis()
    times, values = analysis.volume_envelope(inputs.audio)
    beats: Sequence[float] = ()
    if music.mode == "interpolate":
        segments = timeline.interpolate_segments(
            inputs.duration, inputs.lyrics, ips=music.ips, video_length=music.video_length, envelope=(times, values),
            fps=config.output.fps, faithful_steps=music.faithful_steps,
        )
    else:
        beats = analysis.detect_beats(inputs.audio)
        segments = timeline.beat_segments(
            inputs.duration, beats, inputs.lyrics, ips=music.ips, envelope=(times, values), mode=music.mode,
            text_weight=music.text_weight, audio_weight=music.audio_weight, fps=config.output.fps,
            faithful_steps=music.faithful_steps,
        )
    if config.output.preview:
        segments = [dataclasses.replace(seg, steps=min(seg.steps, config.output.preview_steps)) for seg in segments]
    analysis = Analysis(tuple(float(b) for b in beats), tuple(np.asarray(times, dtype=float).tolist()),
                        tuple(np.asarray(values, dtype=float).tolist()))
    return segments, analysis


def plain_segments(config: Config) -> list[Segment]:
    """A run without a song: ``-i`` steps of the ``-p`` prompts, one segment per story phrase."""
    from metamusic.optim.prompts import split_story

    phrases = split_story(config.prompts.prompts or "")
    total = config.prompts.iterations
    every = config.prompts.change_prompt_every
    n = len(phrases) if every <= 0 else max(1, -(-total // every))
    n = min(n, total) if every > 0 else 1
    segments = []
    step0 = 0
    for i in range(n):
        steps = total - step0 if i == n - 1 else every
        text = phrases[i % len(phrases)] if phrases else None
        t0, t1 = step0 / config.output.fps, (step0 + steps) / config.output.fps
        segments.append(Segment(index=i, start=t0, end=t1, steps=steps, kind="text", text=text,
                                lyric_index=None, text_weight=1.0, audio_weight=0.0,
                                audio_start=t0, audio_end=t1))
        step0 += steps
    return segments


def keyframe_groups(segments: Sequence[Segment], every: int | str) -> tuple[tuple[int, int], ...]:
    """[first, end) segment ranges, one per keyframe, for ``--keyframe_every``.

    A number N: N consecutive segments each (the last keyframe may cover fewer). ``"line"``: a
    keyframe starts at every segment where a lyric line starts (``lyric_index`` set and differing
    from the segment before's), so each keyframe covers one line until the next one starts; the
    segments before the first line (an intro) are one keyframe more.
    """
    n = len(segments)
    if every == "line":
        firsts = [0] + [i for i in range(1, n) if segments[i].lyric_index is not None
                        and segments[i].lyric_index != segments[i - 1].lyric_index]
    elif isinstance(every, int) and not isinstance(every, bool) and every >= 1:
        firsts = list(range(0, n, every))
    else:
        raise InputError(f"--keyframe_every {every}: expected a whole number of segments (beats) >= 1, or line")
    return tuple((a, b) for a, b in zip(firsts, firsts[1:] + [n]) if b > a)


def plan_tasks(n_segments: int, *, keyframes: bool, independent: bool = False, batch: int = 1,
               groups: Sequence[tuple[int, int]] | None = None) -> list[Task]:
    """The tasks of a render of ``n_segments`` segments, in an order that satisfies every ``needs``.

    ``groups``: keyframe mode's [first, end) segments per keyframe (default: one per segment).
    Frames task i needs the keyframes before, of and after segment i's own.
    """
    if not keyframes:
        return [Task("segment", (i,), (f"segment_{i - 1:05d}",) if i else ()) for i in range(n_segments)]
    groups = list(groups) if groups is not None else [(i, i + 1) for i in range(n_segments)]
    key_tasks: list[Task] = []
    if independent:
        step = max(1, batch)
        for g in range(0, len(groups), step):
            chunk = groups[g : g + step]
            key_tasks.append(Task("keyframes", tuple(range(chunk[0][0], chunk[-1][1]))))
    else:
        key_tasks = [Task("keyframes", tuple(range(a, b)), (f"keyframes_{groups[g - 1][0]:05d}",) if g else ())
                     for g, (a, b) in enumerate(groups)]
    owner = {i: t.id for t in key_tasks for i in t.segments}
    holder = {g: owner[a] for g, (a, _) in enumerate(groups)}
    frame_tasks = []
    for g, (a, b) in enumerate(groups):
        needs = tuple(sorted({holder[h] for h in (g - 1, g, g + 1) if 0 <= h < len(groups)}))
        frame_tasks += [Task("frames", (i,), needs) for i in range(a, b)]
    return key_tasks + frame_tasks


def task_steps(config: Config, plan: Plan, task: Task) -> int:
    """Optimisation steps ``task`` runs: its segment's, or --keyframe_steps (capped in a preview) per keyframe."""
    if task.kind == "segment":
        return plan.segments[task.segments[0]].steps
    if task.kind == "keyframes":
        steps = config.keyframes.per_keyframe_steps()
        if config.output.preview:
            steps = min(steps, config.output.preview_steps)
        return steps * len(plan.task_keyframes(task))
    return 0


def make_plan(config: Config, inputs: Inputs, segments: Sequence[Segment], analysis: Analysis) -> Plan:
    """The plan of a render of ``segments`` (the storyboard) with this configuration."""
    kcfg = config.keyframes
    duration = float(inputs.duration) if inputs.audio is not None else float(segments[-1].end)
    groups = keyframe_groups(segments, kcfg.every) if kcfg.enabled and kcfg.every != 1 else ()
    tasks = plan_tasks(len(segments), keyframes=kcfg.enabled, independent=kcfg.independent, batch=kcfg.batch,
                       groups=groups or None)
    return Plan(tuple(segments), tuple(tasks), float(config.output.fps), duration, tuple(inputs.size),
                bool(kcfg.enabled), int(config.seed), analysis, groups=groups, beat_pulse=bool(groups))


def pending_tasks(plan: Plan, finished: set[str]) -> list[Task]:
    """Tasks to run: those not finished, in plan order.

    A finished task stays finished when a task it needs runs again to repair a damaged output:
    that task reproduces the same state (every draw is seeded), so what was built on it holds.
    """
    return [task for task in plan.tasks if task.id not in finished]


def tasks_from(plan: Plan, segment: int) -> set[str]:
    """Ids of the tasks that ``--from_segment segment`` re-renders: those touching a segment >= it,
    and every task that needs one of them."""
    out: set[str] = set()
    for task in plan.tasks:
        if max(task.segments) >= segment or any(n in out for n in task.needs):
            out.add(task.id)
    return out


def select_tasks(plan: Plan, finished: set[str], from_segment: int | None = None) -> list[Task]:
    """The tasks a render runs, given the finished ones; ``from_segment`` re-renders from there on.

    InputError when ``from_segment`` is asked of a render whose earlier tasks are not finished.
    """
    if from_segment is not None:
        redo = tasks_from(plan, from_segment)
        missing = [t.id for t in plan.tasks if t.id not in redo and t.id not in finished]
        if missing:
            raise InputError(f"--from_segment {from_segment}: {len(missing)} task(s) before it are not finished "
                             f"(first: {missing[0]}); resume it first (same command without --from_segment)")
        finished = finished - redo
    return pending_tasks(plan, finished)


def keep_state_after(policy: str, index: int) -> bool:
    """Whether ``--keep_states POLICY`` keeps the state after segment ``index`` once a later one exists.

    all: every state (any ``--from_segment K`` works); last: none but the newest (resume only);
    every:N: the states after segments N - 1, 2N - 1, ... (``--from_segment`` at multiples of N).
    """
    if policy == "all":
        return True
    if policy == "last":
        return False
    if policy.startswith("every:") and policy[6:].isdigit() and int(policy[6:]) > 0:
        return (index + 1) % int(policy[6:]) == 0
    raise InputError(f"--keep_states {policy}: expected all, last or every:N (N a positive number of segments)")
