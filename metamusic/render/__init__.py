"""The render engine behind generate.py and generate_interpolate.py.

``generate(config)`` runs these named steps, one module each:

1. ``inputs.check_inputs``: every file, size and device checked before any model loads.
2. ``plan.song_timeline``: the song's segments (beats, lyrics) and what drives each.
3. ``prepare.load_models``: VQGAN, CLIP and Wav2CLIP, loaded (and so verified) before anything
   is written.
4. ``runfolder.open_run``: the run folder (config, storyboard), reopened if it matches.
5. ``plan.make_plan`` / ``plan.select_tasks``: the render as a plan of resumable tasks, and
   which of them still have to run (resume, ``--from_segment``).
6. ``prepare.encode_targets`` then the executor runs the tasks (``frame_mode`` segments or
   ``keyframe_mode`` keyframes and frame chunks); the run folder records each finished task.
7. ``finish.finish``: join the segments, mux the song, captions; statistics into run.json.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from metamusic.config import Config
from metamusic.errors import (
    DiskFull,
    InputError,
    Interrupted,
    MetaMusicError,
    Terminated,
)
from metamusic.render.executor import Executor, LocalExecutor
from metamusic.render.inputs import (
    Inputs,
    check_inputs,
    estimate_disk_bytes,
    output_paths,
)
from metamusic.render.plan import (
    Plan,
    Task,
    keep_state_after,
    make_plan,
    select_tasks,
    song_timeline,
)
from metamusic.render.prepare import (
    Models,
    compose_prompt,
    encode_targets,
    initial_latent,
    load_models,
    step_config,
)
from metamusic.render.tasks import Job, TaskOutput, load_inputs
from metamusic.runfolder import RunFolder, open_run, resolve_seed, resume_hint, run_info
from metamusic.validate import validate

__all__ = [
    "Inputs",
    "Models",
    "check_inputs",
    "compose_prompt",
    "estimate_disk_bytes",
    "generate",
    "output_paths",
    "resolve_config",
]

log = logging.getLogger("metamusic")


def generate(config: Config, *, resume: bool = True, force: bool = False, from_segment: int | None = None,
             executor: Executor | None = None) -> Path:
    """Render ``config`` to its output video; return the video's path.

    Ctrl-C (SIGINT) abandons the task in progress (its partial files are deleted; finished
    tasks stay) and raises :class:`Interrupted` saying how to resume. ``executor`` runs the
    tasks (default: :class:`LocalExecutor`, in this process).
    """
    config = resolve_config(config, resume=resume and not force)
    run_dir = output_paths(config)[1]
    if config.music.align or config.music.transcribe:  # 0: time the lyrics first (Whisper)
        from metamusic.lyricsync import timed_lyrics_for

        timed_lyrics_for(config, run_dir)  # sets config.music.lyrics to the timed file in the run folder
    with _sigint_watch() as interrupted:
        try:
            return _generate(config, force=force, from_segment=from_segment, executor=executor)
        except KeyboardInterrupt:
            stop = Terminated if interrupted() == "SIGTERM" else Interrupted
            raise stop(resume_hint(config, run_dir)) from None
        except OSError as exc:
            if exc.errno not in _DISK_FULL_ERRNOS:
                raise
            raise _disk_full(config, run_dir) from None
        except MetaMusicError as exc:
            if interrupted():  # e.g. ffmpeg, hit by the same Ctrl-C, failed before Python noticed
                stop = Terminated if interrupted() == "SIGTERM" else Interrupted
                raise stop(resume_hint(config, run_dir)) from None
            if any(text in str(exc) for text in _DISK_FULL_TEXTS):  # ffmpeg ran out of space
                raise _disk_full(config, run_dir) from None
            raise


_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_DISK_FULL_TEXTS = ("No space left on device", "File too large", "Disk quota exceeded")


def _disk_full(config: Config, run_dir: Path) -> DiskFull:
    """The one-line error for a full disk: the folder, the space the rest needs, how to resume."""
    run = RunFolder(run_dir)
    need = ""
    try:
        plan = json.loads(run.plan_path.read_text(encoding="utf-8"))
        done = len(list(run.tasks_dir.glob("*.json")))
        left = 1 - done / max(1, len(plan["tasks"]))
        w, h = plan["size"]
        latent = 256 * (w // 16) * (h // 16)  # a f16 VQGAN's latent (the default model)
        total = estimate_disk_bytes(plan["duration"], plan["fps"], (w, h), latent, len(plan["tasks"]))
        need = f"; the rest of the render needs about {max(1, round(left * total / 1e6))} MB more"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return DiskFull(f"{run_dir}: no space left on its disk{need}; free some space (or choose another "
                    "-o/--run_dir) and run the same command again: it resumes where it stopped")


def resolve_config(config: Config, *, resume: bool = True) -> Config:
    """A copy of ``config`` with what a render decides for itself: the seed, and --preview's names and size.

    --preview renders the same timeline small and fast, beside the output as X.preview.mp4 (in
    X.preview.run); resolving a preview's own saved configuration again changes nothing.
    """
    config = copy.deepcopy(config)
    out = config.output
    if out.preview:
        video, _ = output_paths(config)
        if not video.stem.endswith(".preview"):
            out.output = str(video.with_name(video.stem + ".preview.mp4"))
            if out.run_dir:
                out.run_dir = str(Path(out.run_dir).with_name(Path(out.run_dir).name + ".preview"))
        w, h = out.size or (128, 128)
        scale = min(1.0, 128 / max(w, h))
        out.size = (max(2, int(w * scale)), max(2, int(h * scale)))
    config.seed = resolve_seed(config, output_paths(config)[1], resume=resume)
    return config


def _generate(config: Config, *, force: bool, from_segment: int | None, executor: Executor | None) -> Path:
    validate(config)  # every flag, before any file is read, model loaded or folder written
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    inputs = check_inputs(config)  # 1
    log.info("seed %d (pass -sd %d to reproduce this run)", config.seed, config.seed)
    config = dataclasses.replace(config, output=dataclasses.replace(config.output, size=tuple(inputs.size)))
    if config.output.captions in ("burn", "both") and inputs.lyrics is not None:
        from metamusic.media.captions import check_lyrics_font

        check_lyrics_font(inputs.lyrics, config.output.caption_font)
    keep_state_after(config.output.keep_states, 0)  # a bad --keep_states fails here, before any model loads
    if config.keyframes.enabled:
        from metamusic.render.keyframe_mode import check_keyframe_settings

        check_keyframe_settings(config)
    segments, analysis = song_timeline(config, inputs)  # 2
    log.info("loading models: VQGAN %s, CLIP %s%s", config.models.vqgan_checkpoint, config.models.clip_model,
             f", Wav2CLIP {config.models.wav2clip_checkpoint}" if inputs.audio is not None else "")
    models = load_models(config, need_audio=inputs.audio is not None)  # 3
    with RunFolder(inputs.run_dir).locked():
        run, segments = open_run(config, inputs.run_dir, inputs.output, segments, force=force,
                                 from_segment=from_segment)  # 4
        plan = make_plan(config, inputs, segments, analysis)  # 5
        run.write_plan(plan.to_dict())
        pending = _tasks_to_run(run, plan, from_segment)
        info = run_info(config)
        run.write_info(info)
        if config.output.sheets:
            from metamusic.render.finish import write_timeline_sheet

            picture(write_timeline_sheet, run, inputs, plan)
        t0 = time.perf_counter()
        try:
            _run_tasks(config, inputs, run, plan, pending, models, executor)  # 6
        finally:
            _write_statistics(run, plan, info, pending, time.perf_counter() - t0)
        from metamusic.render.finish import finish, write_storyboard_pages

        if config.output.sheets and pending:
            picture(write_storyboard_pages, run, plan)
        out = finish(config, inputs, run, plan)  # 7
    totals = run.read_info().get("this_run", {})
    log.info("wrote %s: %d segments, %d tasks run, %d steps run, %.1f s", out, len(plan.segments),
             totals.get("tasks_run", 0), totals.get("steps_run", 0), totals.get("seconds", 0.0))
    log.info("%s", summary(config, out, run))
    return out


def summary(config: Config, video: Path, run: RunFolder) -> str:
    """The closing lines of a render: the video, the run folder and every other file written."""
    lines = [f"video:      {video}", f"run folder: {run.root} ({run.size_bytes() / 1e6:.1f} MB)"]
    sheets = [p for p in [run.root / "timeline.png", *sorted(run.root.glob("storyboard_*.png"))] if p.is_file()]
    if sheets:
        lines.append("sheets:     " + ", ".join(str(p) for p in sheets))
    extras = [video.with_suffix(s) for s in (".srt", ".vtt")] + [Path(config.output.output)]
    extras = [p for p in extras if p != video and p.suffix in (".srt", ".vtt", ".png") and p.is_file()]
    if extras:
        lines.append("also:       " + ", ".join(str(p) for p in extras))
    return "\n".join(lines)


def _tasks_to_run(run: RunFolder, plan: Plan, from_segment: int | None) -> list[Task]:
    """The pending tasks (resume and --from_segment); their old records and files are deleted."""
    finished = run.finished_tasks([t.id for t in plan.tasks])
    if from_segment and not plan.keyframes and not run.state_path(from_segment - 1).is_file():
        kept = [0] + [i + 1 for i in range(len(plan.segments) - 1) if run.state_path(i).is_file()]
        raise InputError(f"--from_segment {from_segment}: the state after segment {from_segment - 1} was not kept "
                         f"(--keep_states {config_keep(run)}); possible values: {', '.join(map(str, kept[:20]))}"
                         f"{' ...' if len(kept) > 20 else ''}")
    pending = select_tasks(plan, finished, from_segment)
    run.discard_tasks([t.id for t in pending])
    redo = {i for t in pending for i in t.segments}
    kept = {s.index for s in plan.segments} - redo
    for i in run.edited_segments(plan.segments, kept):
        log.warning("%s: segment %d was edited after it was rendered; its video keeps the old "
                    "prompt (re-render it with --from_segment %d)", run.storyboard_path, i, i)
    if not pending:
        log.info("%s: all %d segments are already rendered; assembling the video", run.root, len(plan.segments))
    elif len(pending) < len(plan.tasks):
        log.info("resuming %s at segment %d of %d (%d of %d tasks to run)", run.root, min(redo),
                 len(plan.segments), len(pending), len(plan.tasks))
    if plan.keyframes:
        n_frames = round(plan.duration * plan.fps)
        keyframe_tasks = [t for t in plan.tasks if t.kind == "keyframes"]
        log.info("keyframe mode: %d keyframes in %d tasks; %d frames", len(plan.keyframe_groups),
                 len(keyframe_tasks), n_frames)
        if not config_independent(plan):
            log.info("keyframe mode: warm-started keyframes form a chain: they run one after another")
    return pending


def config_keep(run: RunFolder) -> str:
    saved = run.saved_config()
    return saved.output.keep_states if saved is not None else "all"


def config_independent(plan: Plan) -> bool:
    """True when the plan's keyframes need nothing but the plan (independent keyframes)."""
    return all(not t.needs for t in plan.tasks if t.kind == "keyframes")


def _run_tasks(config: Config, inputs: Inputs, run: RunFolder, plan: Plan, pending: list[Task], models: Models,
               executor: Executor | None) -> None:
    """Encode the targets and run the pending tasks; the run folder records each as it finishes."""
    from metamusic.render.progress import ConsoleProgress

    if not pending:
        return
    device = torch.device(config.device)
    targets = encode_targets(config, inputs, plan.segments, models)
    z0 = initial_latent(config, inputs, models, torch.Generator().manual_seed(plan.seed)).detach().cpu()
    job = Job(config, plan, targets, z0, step_config(config))
    progress = ConsoleProgress(config, plan, run, pending)
    if executor is None:
        executor = LocalExecutor(models, device, run.scratch, progress)
    elif hasattr(executor, "attach"):  # e.g. RayExecutor: where returned files go, and the bars
        executor.attach(run.scratch, progress)
    try:
        executor.run(job, pending, lambda task: load_inputs(run, plan, task), _recorder(config, run, plan))
    finally:
        progress.close()


def _recorder(config: Config, run: RunFolder, plan: Plan) -> Callable[[Task, TaskOutput], None]:
    """Record a finished task in the run folder (and redraw the storyboard sheet)."""
    from metamusic.render.finish import PANELS_PER_PAGE, write_contact_sheet

    def record(task: Task, output: TaskOutput) -> None:
        run.record_task(task.id, files=output.files, states=output.states, stats=output.stats,
                        segments=[plan.segments[i] for i in task.segments])
        i = task.segments[0]
        if task.kind == "segment" and i > 0 and not keep_state_after(config.output.keep_states, i - 1):
            run.drop_output(f"segment_{i - 1:05d}", f"state/after_{i - 1:05d}.pt")
        log.debug("%s done: %s", task.id, output.stats)
        last = max(task.segments)
        if config.output.sheets and task.kind != "frames" and (last % 10 == 9 or last % PANELS_PER_PAGE == 0):
            picture(write_contact_sheet, run, plan, upto=last)  # a page, every 10 segments: constant cost

    return record


def picture(draw: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Draw a sheet (timeline.png, storyboard pages); a picture that cannot be written never stops a render."""
    try:
        draw(*args, **kwargs)
    except OSError as exc:
        log.warning("could not write a picture (%s: %s); the render goes on", exc.filename or "sheet",
                    exc.strerror or exc)


def _write_statistics(run: RunFolder, plan: Plan, info: dict[str, Any], pending: list[Task], seconds: float) -> None:
    """run.json: per task its steps, seconds and frames; the totals; what this invocation ran."""
    tasks = {}
    for task in plan.tasks:
        record = run.task_record(task.id)
        if record is not None:
            tasks[task.id] = record.get("stats", {})
    ran = [tasks[t.id] for t in pending if t.id in tasks]
    info = dict(info)
    info["tasks"] = tasks
    info["totals"] = {
        "tasks": len(plan.tasks),
        "tasks_finished": len(tasks),
        "steps": sum(s.get("steps", 0) for s in tasks.values()),
        "frames": sum(s.get("frames", 0) for s in tasks.values()),
        "seconds": round(sum(s.get("seconds", 0.0) for s in tasks.values()), 3),
    }
    info["this_run"] = {
        "tasks_run": len(ran),
        "steps_run": sum(s.get("steps", 0) for s in ran),
        "seconds": round(seconds, 3),
    }
    run.write_info(info)


@contextlib.contextmanager
def _sigint_watch() -> Iterator[Callable[[], str | None]]:
    """Note whether SIGINT or SIGTERM arrived while rendering; both raise KeyboardInterrupt.

    SIGTERM (what schedulers and preemptible machines send) is handled like Ctrl-C: the task in
    progress is abandoned, finished tasks stay, and the render ends with exit status 143.
    Installed only for the duration of a render and only from the main thread (never at import);
    a signal someone else already handles (or ignores) is left alone.
    """
    seen: dict[str, str | None] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    ours = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    previous = {signum: signal.getsignal(signum) for signum in ours}

    def handler(signum: int, frame: Any) -> None:
        seen["signal"] = signal.Signals(signum).name
        raise KeyboardInterrupt

    for signum, default in ours.items():
        if previous[signum] is default:
            signal.signal(signum, handler)
    try:
        yield lambda: seen["signal"]
    finally:
        for signum, default in ours.items():
            if previous[signum] is default:
                signal.signal(signum, previous[signum])
