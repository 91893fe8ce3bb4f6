"""The run folder: everything a render needs to be inspected, resumed or partly re-rendered.

Layout (every file written atomically: temporary name, then rename)::

    <run>/config.yaml       the resolved configuration (every setting, reproducible with --config)
    <run>/run.json          versions, model files (size, SHA-256), timings
    <run>/storyboard.yaml   the timeline: each segment's start, end, prompt source, text, steps
    <run>/segments/segment_00000.mp4 ...   one video per finished segment
    <run>/state/after_00000.pt ...         latent, optimiser state and last frame after a segment
    <run>/progress.png      the latest frame (at --save_every)

A segment counts as finished only when both its video and its state file exist; a render
killed mid-segment restarts that segment from the previous state, and because every random
draw of a step is seeded from (seed, segment, step), the result is bit-identical on CPU.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.files import atomic_path, atomic_write_text
from metamusic.timeline import Segment

# Settings that change how a run is reported or where it runs, not what it renders.
_COSMETIC = {
    "output.save_every",
    "output.save_png",
    "output.run_dir",
    "output.output",
    "output.output_video_fps",
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
            "# MetaMusic storyboard: one entry per segment. You may edit `text` (the prompt of\n"
            "# a text/fused segment) and re-render from that segment with --from_segment K.\n"
        )
        body = yaml.safe_dump(
            {"segments": [s.to_dict() for s in segments]}, sort_keys=False, allow_unicode=True
        )
        atomic_write_text(self.storyboard_path, header + body)

    def save_state(self, index: int, state: dict[str, Any]) -> None:
        with atomic_path(self.state_path(index)) as tmp:
            torch.save(state, tmp)

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
        path = self.state_path(index)
        if not path.exists():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def finished_segments(self) -> int:
        """Number of leading segments whose video and state both exist."""
        n = 0
        while self.segment_video(n).exists() and self.state_path(n).exists():
            n += 1
        return n

    def saved_config(self) -> Config | None:
        if not self.config_path.exists():
            return None
        return Config.load(self.config_path)

    def clear_from(self, index: int) -> None:
        """Delete segment videos and states from ``index`` on (before re-rendering them)."""
        for pattern, folder in (("segment_(\\d+)\\.mp4", self.segments_dir), ("after_(\\d+)\\.pt", self.root / "state")):
            if not folder.exists():
                continue
            for p in folder.iterdir():
                m = re.fullmatch(pattern, p.name)
                if m and int(m.group(1)) >= index:
                    p.unlink()


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
