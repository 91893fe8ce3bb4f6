"""The run folder: everything a render needs to be inspected, resumed or partly re-rendered.

Layout (every file written atomically: temporary name, flushed, then renamed)::

    <run>/config.yaml       the resolved configuration (every setting, reproducible with --config)
    <run>/run.json          versions, model files (size, SHA-256), per-task statistics and totals
    <run>/storyboard.yaml   the timeline: each segment's start, end, prompt source, text, steps
    <run>/plan.json         the tasks of the render (see metamusic.render.plan)
    <run>/tasks/<id>.json   one record per finished task: its statistics, the storyboard entries it
                            rendered, and the size and SHA-256 of every file it wrote
    <run>/segments/segment_00000.mp4 ...   one video per segment
    <run>/state/after_00000.pt ...         frame mode: latent, optimiser state and last frame
    <run>/keyframes/key_00000.pt ...        keyframe mode: each keyframe's latent and image
    <run>/progress.png      the latest frame (at --save_every with --save_png)
    <run>/timeline.png, storyboard_001.png ...   the song's timeline; pages of 48 segment pictures

A task counts as finished only when its record exists and every file the record names has the
recorded size and SHA-256 (files are put in place first, the record last). A render killed
mid-task re-runs that task from the outputs of the tasks it needs; no RNG state needs saving
because every random draw is seeded from (seed, segment, step), so the result is bit-identical
on CPU. Hidden ``.*.partial.*`` files and ``.scratch/`` are in-progress writes a kill left
behind; they are deleted when a render opens the folder.

The resume rules live here too: :func:`open_run` (resume, refuse changed settings, ``--force``,
``--from_segment``), :func:`resolve_seed` and :func:`resume_hint`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
import yaml

from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.files import atomic_path, atomic_write_text, replace_durably, sha256_of
from metamusic.song.timeline import Segment

log = logging.getLogger("metamusic")

# Settings that change how a run is reported or where it runs, not what it renders.
_COSMETIC = {
    "output.save_every",
    "output.save_png",
    "output.run_dir",
    "output.output",
    "output.output_video_fps",
    "output.captions",  # captions are drawn on the final video, not on the segments
    "output.caption_font",
    "output.caption_size",
    "output.caption_position",
    "output.sheets",
    "output.keep_states",  # which states are kept on disk, not what renders
    "models.trust_torchscript",  # a permission typed on each command line, never taken from a file
    "device",
}


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def storyboard_path(self) -> Path:
        return self.root / "storyboard.yaml"

    @property
    def info_path(self) -> Path:
        return self.root / "run.json"

    @property
    def segments_dir(self) -> Path:
        return self.root / "segments"

    @property
    def progress_png(self) -> Path:
        return self.root / "progress.png"

    def storyboard_page(self, page: int) -> Path:
        """The picture of storyboard page ``page`` (0-based): ``storyboard_001.png``, ..."""
        return self.root / f"storyboard_{page + 1:03d}.png"

    def segment_video(self, index: int) -> Path:
        return self.segments_dir / f"segment_{index:05d}.mp4"

    def state_path(self, index: int) -> Path:
        return self.root / "state" / f"after_{index:05d}.pt"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder so two renders never write into it at once.

        The lock is an flock on ``<run>/.lock``: the kernel releases it when the process dies,
        even by SIGKILL, so a killed render never leaves a stale lock behind.
        """
        try:
            import fcntl
        except ImportError:  # no flock (Windows): run unlocked
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"{self.root}: another render is using this run folder; "
                                 "wait for it to end or choose another -o/--run_dir") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def tasks_dir(self) -> Path:
        return self.root / "tasks"

    @property
    def scratch(self) -> Path:
        """Where tasks of this process write their files before they are recorded."""
        return self.root / ".scratch"

    def keyframe_path(self, index: int) -> Path:
        return self.root / "keyframes" / f"key_{index:05d}.pt"

    def task_record_path(self, task_id: str) -> Path:
        return self.tasks_dir / f"{task_id}.json"

    # -- writing ---------------------------------------------------------------------------
    def create(self) -> None:
        for folder in (self.segments_dir, self.root / "state", self.tasks_dir):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir()

    def write_config(self, config: Config) -> None:
        config.save(self.config_path)

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.info_path, json.dumps(info, indent=2, sort_keys=True))

    def read_info(self) -> dict[str, Any]:
        try:
            data = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_plan(self, plan: dict[str, Any]) -> None:
        atomic_write_text(self.plan_path, json.dumps(plan, indent=1))

    def write_storyboard(self, segments: Sequence[Segment]) -> None:
        header = (
            "# MetaMusic storyboard: one entry per segment. You may edit a segment's `text` (the\n"
            "# prompt of a text or fused segment), `kind` (text, audio, fused), weights and steps,\n"
            "# then re-render from it with --from_segment K (earlier segments stay untouched).\n"
            "# Times (start, end) follow the song and cannot be edited.\n"
        )
        body = yaml.safe_dump(
            {"segments": [s.to_dict() for s in segments]}, sort_keys=False, allow_unicode=True
        )
        atomic_write_text(self.storyboard_path, header + body)

    def save_state(self, index: int, state: dict[str, Any]) -> None:
        """Write the state after segment ``index`` atomically, flushed to disk before the rename."""
        save_tensors(self.state_path(index), state)

    def record_task(self, task_id: str, *, files: Mapping[str, Path], states: Mapping[str, dict[str, Any]],
                    stats: Mapping[str, Any], segments: Sequence[Segment]) -> None:
        """Put a finished task's outputs in place, then write its record (which makes it finished).

        ``files`` maps run-folder-relative names to files written elsewhere (moved here);
        ``states`` maps run-folder-relative names to tensors to save. The record keeps each
        output's size and SHA-256, ``stats`` and the storyboard entries the task rendered.
        """
        written: dict[str, dict[str, Any]] = {}
        for name, source in files.items():
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_durably(source, target)
            written[name] = _file_entry(target)
        for name, state in states.items():
            save_tensors(self.root / name, state)
            written[name] = _file_entry(self.root / name)
        record = {"task": task_id, "finished": time.time(), "stats": dict(stats), "files": written,
                  "segments": [s.to_dict() for s in segments]}
        atomic_write_text(self.task_record_path(task_id), json.dumps(record, indent=1, sort_keys=True))

    # -- reading ---------------------------------------------------------------------------
    def read_storyboard(self) -> list[Segment]:
        try:
            data = yaml.safe_load(self.storyboard_path.read_text(encoding="utf-8"))
            return [Segment.from_dict(d) for d in data["segments"]]
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{self.storyboard_path}: cannot read the storyboard ({exc.__class__.__name__}: {exc})"
            ) from None

    def load_state(self, index: int) -> dict[str, Any] | None:
        """The state saved after segment ``index`` (None if absent); InputError if unreadable."""
        return load_tensors(self.state_path(index), ("z", "optimiser", "last_image"),
                            f"re-render from segment {index} with --from_segment {index}")

    def load_keyframe(self, index: int) -> dict[str, Any] | None:
        """Keyframe ``index``'s latent and image (None if absent); InputError if unreadable."""
        return load_tensors(self.keyframe_path(index), ("z", "image"),
                            f"re-render from segment {index} with --from_segment {index}")

    def task_record(self, task_id: str) -> dict[str, Any] | None:
        """The record of a finished task, or None if it has none or it is unreadable."""
        try:
            data = json.loads(self.task_record_path(task_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None

    def task_problem(self, task_id: str) -> str | None:
        """Why a task does not count as finished (None when it does): no record, or a damaged output."""
        record = self.task_record(task_id)
        if record is None:
            return "not finished"
        for name, entry in record["files"].items():
            path = self.root / name
            if not path.is_file():
                return f"{path}: missing"
            if path.stat().st_size != entry.get("size") or sha256_of(path) != entry.get("sha256"):
                return f"{path}: damaged (size or SHA-256 differs from when it was written)"
        return None

    def finished_tasks(self, task_ids: Sequence[str]) -> set[str]:
        """The ids among ``task_ids`` whose record exists and whose outputs are intact (warns otherwise)."""
        done = set()
        for task_id in task_ids:
            problem = self.task_problem(task_id)
            if problem is None:
                done.add(task_id)
            elif problem != "not finished":
                log.warning("%s; re-rendering task %s", problem, task_id)
        return done

    def rendered_entries(self) -> dict[int, dict[str, Any]]:
        """Storyboard entries the finished tasks rendered, by segment index."""
        out: dict[int, dict[str, Any]] = {}
        if not self.tasks_dir.is_dir():
            return out
        for path in sorted(self.tasks_dir.glob("*.json")):
            record = self.task_record(path.stem)
            for entry in (record or {}).get("segments", []):
                if isinstance(entry, dict) and "index" in entry:
                    out[int(entry["index"])] = entry
        return out

    def edited_segments(self, segments: Sequence[Segment], kept: set[int]) -> list[int]:
        """Segments in ``kept`` whose prompt settings differ from what their task rendered."""
        rendered = self.rendered_entries()
        keys = ("text", "kind", "steps", "text_weight", "audio_weight", "audio_start", "audio_end")
        out = []
        for seg in segments:
            old = rendered.get(seg.index)
            new = seg.to_dict()
            if seg.index in kept and old is not None and any(old.get(k) != new[k] for k in keys):
                out.append(seg.index)
        return out

    def saved_config(self) -> Config | None:
        if not self.config_path.exists():
            return None
        return Config.load(self.config_path)

    def discard_tasks(self, task_ids: Sequence[str]) -> None:
        """Forget tasks: delete their records and the files they wrote (they will run again)."""
        for task_id in task_ids:
            record = self.task_record(task_id)
            self.task_record_path(task_id).unlink(missing_ok=True)
            for name in (record or {}).get("files", {}):
                (self.root / name).unlink(missing_ok=True)

    def drop_output(self, task_id: str, name: str) -> None:
        """Delete one output of a finished task on purpose (``--keep_states``); the task stays finished."""
        record = self.task_record(task_id)
        if record is None or name not in record["files"]:
            return
        del record["files"][name]
        atomic_write_text(self.task_record_path(task_id), json.dumps(record, indent=1, sort_keys=True))
        (self.root / name).unlink(missing_ok=True)

    def size_bytes(self) -> int:
        """Bytes the run folder takes on disk (its files)."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def has_finished_work(self) -> bool:
        """True when at least one task of this folder has a record."""
        return self.tasks_dir.is_dir() and any(self.tasks_dir.glob("*.json"))

    def start_over(self) -> None:
        """Delete every output of earlier renders (tasks, videos, states, sheets); keep the lock."""
        for name in ("tasks", "segments", "state", "keyframes", ".scratch"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        for name in ("plan.json", "storyboard.yaml", "progress.png", "timeline.png"):
            (self.root / name).unlink(missing_ok=True)
        for page in self.root.glob("storyboard_*.png"):
            page.unlink()

    def clear_partial(self) -> None:
        """Delete what a killed write left behind: hidden partial files and the scratch folder."""
        for folder in (self.root, self.segments_dir, self.root / "state", self.root / "keyframes", self.tasks_dir):
            if folder.is_dir():
                for p in folder.iterdir():
                    if _is_partial(p.name):
                        p.unlink(missing_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


def save_tensors(path: Path, state: dict[str, Any]) -> None:
    """torch.save ``state`` to ``path`` atomically and durably (files.atomic_path)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_tensors(path: Path, keys: Sequence[str], fix: str) -> dict[str, Any] | None:
    """A dict of tensors saved by :func:`save_tensors` (weights-only), None if absent; InputError if damaged."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise InputError(f"{path}: damaged state file ({exc.__class__.__name__}); {fix}") from None
    if not isinstance(state, dict) or not set(keys) <= set(state):
        raise InputError(f"{path}: not a MetaMusic state file; {fix}")
    return state


def _file_entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_of(path)}


def _is_partial(name: str) -> bool:
    """True for the hidden temporary names of atomic writes (files.atomic_path, video.temp_path_for)."""
    return name.startswith(".") and ".partial" in name


def config_differences(saved: Config, current: Config) -> list[str]:
    """Dotted names of the settings that differ between two configs (ignoring cosmetic ones)."""
    a, b = _flatten(saved.to_dict()), _flatten(current.to_dict())
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if k not in _COSMETIC and a.get(k) != b.get(k)]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


# ---------------------------------------------------------------------------------------------
# Resume rules


def open_run(config: Config, run_dir: Path, output: Path, planned: Sequence[Segment], *, resume: bool = True,
             force: bool = False, from_segment: int | None = None) -> tuple[RunFolder, list[Segment]]:
    """Create or reopen the run folder; return it and the storyboard to render.

    A run folder made with the same settings is reopened and its storyboard (which the user
    may have edited) replaces ``planned``; other settings are refused with the differences
    named, unless ``force`` starts the folder over, or nothing in it was finished yet (a render
    that failed before its first task starts over by itself). Which tasks then run is decided
    by the render from the task records (:func:`metamusic.render.plan.select_tasks`).
    """
    run = RunFolder(run_dir)
    saved = run.saved_config()
    if from_segment is not None:
        if force:
            raise InputError(f"--from_segment {from_segment}: cannot be combined with --force "
                             "(--force starts the run over; --from_segment re-renders part of it)")
        if saved is None or not run.storyboard_path.exists():
            raise InputError(f"--from_segment {from_segment}: {run.root} holds no render to re-render; "
                             "render it first (same command without --from_segment)")
    segments = list(planned)
    keep = saved is not None and (resume or from_segment is not None) and not force
    if keep:
        diffs = config_differences(saved, config)
        if diffs and not run.has_finished_work():
            log.info("%s: nothing was finished with its earlier settings; starting it over", run.root)
            segments = _edited_storyboard(run, planned)  # prompt edits made before the first render stay
            keep = False
        elif diffs:
            raise InputError(
                f"{run.root}: this run folder was made with other settings ({'; '.join(diffs[:3])}"
                f"{'; ...' if len(diffs) > 3 else ''}); use --force to start it over, or another -o/--run_dir"
            )
    if keep and run.storyboard_path.exists():
        segments = checked_storyboard(run, planned)
        if from_segment is not None and not 0 <= from_segment < len(segments):
            raise InputError(f"--from_segment {from_segment}: {run.storyboard_path} has segments "
                             f"0..{len(segments) - 1}")
    elif run.root.exists():
        run.start_over()
    run.clear_partial()
    _discard(_partial_name(output))
    run.create()
    output.parent.mkdir(parents=True, exist_ok=True)
    run.write_config(config)
    run.write_storyboard(segments)
    return run, segments


def _edited_storyboard(run: RunFolder, planned: Sequence[Segment]) -> list[Segment]:
    """The folder's storyboard if it still fits the song's timeline (only prompts edited), else ``planned``."""
    if not run.storyboard_path.is_file():
        return list(planned)
    try:
        return checked_storyboard(run, planned)
    except InputError:
        return list(planned)


def _partial_name(path: Path) -> Path:
    from metamusic.media.video import temp_path_for

    return temp_path_for(path)


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def checked_storyboard(run: RunFolder, planned: Sequence[Segment]) -> list[Segment]:
    """The run's storyboard, checked against the song's timeline (only prompts may be edited)."""
    segments = run.read_storyboard()
    if len(segments) != len(planned):
        raise InputError(f"{run.storyboard_path}: {len(segments)} segments, but the song's timeline has "
                         f"{len(planned)}; only prompts may be edited (use --force to start over)")
    for i, (seg, plan_seg) in enumerate(zip(segments, planned)):
        if seg.index != i or abs(seg.start - plan_seg.start) > 1e-6 or abs(seg.end - plan_seg.end) > 1e-6:
            raise InputError(
                f"{run.storyboard_path}: segment {i} has index {seg.index}, {seg.start:g}-{seg.end:g} s but the "
                f"song's timeline says {i}, {plan_seg.start:g}-{plan_seg.end:g} s; segment times cannot be edited "
                "(use --force to start over)"
            )
        if seg.kind == "audio" and seg.text and seg.text != plan_seg.text:
            log.warning("%s: segment %d is an audio segment, so its text is not used (set kind: text or "
                        "fused to use it)", run.storyboard_path, i)
    return segments


def run_info(config: Config) -> dict[str, Any]:
    """Versions and model files (size and SHA-256) for run.json."""
    import platform

    from metamusic import __version__
    from metamusic.models.clip import resolve_clip_path

    files = {}
    clip = resolve_clip_path(config.models.clip_model, config.models.checkpoints_dir)
    for role, path in (("vqgan_config", config.models.vqgan_config), ("vqgan_checkpoint", config.models.vqgan_checkpoint),
                       ("clip", clip), ("wav2clip_checkpoint", config.models.wav2clip_checkpoint)):
        p = Path(path)
        if p.is_file():
            files[role] = {"path": str(p), "size": p.stat().st_size, "sha256": sha256_of(p)}
    return {
        "metamusic": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "model_files": files,
    }


def resolve_seed(config: Config, run_dir: Path, *, resume: bool = True) -> int:
    """The seed of a render: -sd if given, else the run folder's saved seed when resuming, else a new one."""
    if config.seed is not None:
        return int(config.seed)
    if resume:
        run = RunFolder(run_dir)
        saved = run.saved_config() if run.config_path.is_file() else None
        if saved is not None and saved.seed is not None:
            return int(saved.seed)
    return random.SystemRandom().randrange(2**31)


def resume_hint(config: Config, run_dir: Path) -> str:
    """One line for an interrupted render: what is finished and the command that resumes it."""
    run = RunFolder(run_dir)
    if not run.config_path.is_file():
        return "interrupted before rendering started; nothing to resume"
    try:
        total = len(json.loads(run.plan_path.read_text(encoding="utf-8"))["tasks"])
    except (OSError, ValueError, KeyError, TypeError):
        total = None
    done = len(list(run.tasks_dir.glob("*.json"))) if run.tasks_dir.is_dir() else 0
    of = f" of {total}" if total is not None else ""
    script = Path(sys.argv[0]).name if Path(sys.argv[0]).name.startswith("generate") else (
        "generate_interpolate.py" if config.music.mode == "interpolate" else "generate.py")
    command = shlex.join(["python", script, "--resume", str(run.root)])
    return (f"interrupted: {done}{of} tasks are finished in {run.root}; resume with: {command} "
            "(or run the same command again)")
