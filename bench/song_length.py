#!/usr/bin/env python
"""Cost per segment of a short and a long song: every per-segment cost must be constant.

Makes two synthetic 120 BPM songs (60 s and 240 s by default), renders each with the tiny
checkpoints at 16x16 with one optimisation step per segment, sheets on and everything else at
its default, and times the whole command. The last line is one JSON object::

    python bench/song_length.py [--short 60] [--long 240]
    {"short_segments": 119, "short_s_per_segment": ..., "long_segments": 479,
     "long_s_per_segment": ..., "ratio": ...}

``ratio`` is long / short seconds per segment: 1.0 means the cost grows linearly with the song.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def render_seconds(song: Path, models: dict[str, str], out: Path) -> tuple[float, int]:
    """Wall seconds of one generate.py render and its number of segments."""
    args = [sys.executable, str(ROOT / "generate.py"), "-ap", str(song),
            "-conf", models["vqgan_config"], "-ckpt", models["vqgan_checkpoint"], "-m", models["clip"],
            "--wav2clip_checkpoint", models["wav2clip"], "-gid", "cpu", "-s", "16", "16", "--fps", "10",
            "-ips", "0.001", "-cuts", "2", "--precision", "fp32", "-sd", "0", "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"render of {song} failed:\n{proc.stderr[-2000:]}")
    info = json.loads(out.with_suffix(".run").joinpath("run.json").read_text())
    return seconds, int(info["totals"]["tasks"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=60.0, help="seconds of the short song")
    parser.add_argument("--long", type=float, default=240.0, help="seconds of the long song")
    a = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from metamusic.song.audio import synth_song, write_wav
    from metamusic.tiny import write_all

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = write_all(work / "models", seed=0)
        result = {}
        for name, seconds in (("short", a.short), ("long", a.long)):
            song = write_wav(work / f"{name}.wav", synth_song(seconds, 16000, bpm=120, seed=1), 16000)
            wall, segments = render_seconds(song, models, work / f"{name}.mp4")
            result[f"{name}_segments"] = segments
            result[f"{name}_s_per_segment"] = round(wall / segments, 4)
            print(f"{name}: {seconds:g} s song, {segments} segments, {wall:.1f} s", file=sys.stderr)
    result["ratio"] = round(result["long_s_per_segment"] / result["short_s_per_segment"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
