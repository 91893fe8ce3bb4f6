"""The run folder: everything a render needs to be inspected, resumed or partly re-rendered.

Layout (every file written atomically: temporary name, then rename)::

    <run>/config.yaml       the resolved configuration (every setting, reproducible with --config)
    <run>/run.json          versions, model files (size, SHA-256), timings
    <run>/storyboard.yaml   the timeline: each segment's start, end, prompt source, text, steps
    <run>/segments/segment_00000.mp4 ...   one video per finished segment
    <run>/state/after_00000.pt ...         latent, optimiser state and last frame after a segment
    <run>/state/rendered.json               the storyboard entry each finished segment was rendered from
    <run>/progress.png      the latest frame (at --save_every)

A segment counts as finished only when both its video and its state file exist (the video is
renamed into place first, then the state is saved). A render killed mid-segment restarts that
segment from the previous state; no RNG state needs saving because every random draw of a step
is seeded from (seed, segment, step), so the result is bit-identical on CPU. Hidden
``.*.partial.*`` files are in-progress writes a kill left behind; they are deleted on resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator

import torch
import yaml

from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.files import atomic_path, atomic_write_text
from metamusic.song.timeline import Segment

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

    # -- writing ---------------------------------------------------------------------------
    def create(self) -> None:
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "state").mkdir(parents=True, exist_ok=True)

    def write_config(self, config: Config) -> None:
        config.save(self.config_path)

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.info_path, json.dumps(info, indent=2, sort_keys=True))

    def write_storyboard(self, segments: list[Segment]) -> None:
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
        with atomic_path(self.state_path(index)) as tmp:
            with open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())

    @property
    def rendered_path(self) -> Path:
        return self.root / "state" / "rendered.json"

    def record_rendered(self, segment: Segment) -> None:
        """Remember the storyboard entry a finished segment was rendered from (for edit warnings)."""
        entries = self.rendered_entries()
        entries[segment.index] = segment.to_dict()
        data = {str(k): v for k, v in sorted(entries.items())}
        atomic_write_text(self.rendered_path, json.dumps(data, indent=1, sort_keys=True))

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
        path = self.state_path(index)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
            raise InputError(f"{path}: damaged state file ({exc.__class__.__name__}); "
                             f"re-render from segment {index} with --from_segment {index}") from None
        if not isinstance(state, dict) or not {"z", "optimiser", "last_image"} <= set(state):
            raise InputError(f"{path}: not a MetaMusic state file; re-render with --from_segment {index}")
        return state

    def finished_segments(self, limit: int | None = None, frameless: Collection[int] = ()) -> int:
        """Number of leading segments whose video and state both exist (at most ``limit``).

        Segments in ``frameless`` own no video frame (shorter than a frame): their state suffices.
        """
        n = 0
        while (limit is None or n < limit) and self.state_path(n).exists() and (
                n in frameless or self.segment_video(n).exists()):
            n += 1
        return n

    def rendered_entries(self) -> dict[int, dict[str, Any]]:
        """Storyboard entries the finished segments were rendered from, by index ({} if unknown)."""
        try:
            data = json.loads(self.rendered_path.read_text(encoding="utf-8"))
            return {int(k): v for k, v in data.items() if isinstance(v, dict)}
        except (OSError, ValueError, AttributeError):
            return {}

    def edited_segments(self, segments: list[Segment], below: int) -> list[int]:
        """Indices < ``below`` whose prompt settings differ from what their video was rendered from."""
        rendered = self.rendered_entries()
        keys = ("text", "kind", "steps", "text_weight", "audio_weight", "audio_start", "audio_end")
        out = []
        for seg in segments[:below]:
            old = rendered.get(seg.index)
            new = seg.to_dict()
            if old is not None and any(old.get(k) != new[k] for k in keys):
                out.append(seg.index)
        return out

    def saved_config(self) -> Config | None:
        if not self.config_path.exists():
            return None
        return Config.load(self.config_path)

    def clear_from(self, index: int) -> None:
        """Delete segment videos and states from ``index`` on, and writes a kill left unfinished."""
        for pattern, folder in ((r"segment_(\d+)\.mp4", self.segments_dir), (r"after_(\d+)\.pt", self.root / "state")):
            if not folder.exists():
                continue
            for p in folder.iterdir():
                m = re.fullmatch(pattern, p.name)
                if (m and int(m.group(1)) >= index) or _is_partial(p.name):
                    p.unlink(missing_ok=True)
        for p in self.root.glob(".*.partial*") if self.root.exists() else ():
            p.unlink(missing_ok=True)
        entries = self.rendered_entries()
        if any(k >= index for k in entries):
            data = {str(k): v for k, v in sorted(entries.items()) if k < index}
            atomic_write_text(self.rendered_path, json.dumps(data, indent=1, sort_keys=True))


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
