#!/usr/bin/env python
"""What fsync costs a render: time spent in os.fsync as a share of the render's wall time.

Every finished file is flushed to disk before it is renamed into place, and its folder after
(metamusic/files.py). This renders a synthetic song with the tiny checkpoints at the test
settings, in this process, with os.fsync timed, and prints one JSON object as its last line::

    python bench/durability.py [--seconds 6]
    {"fsync_calls": ..., "fsync_s": ..., "render_s": ..., "share": ...}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the synthetic song")
    a = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from metamusic.cli import generate_main
    from metamusic.song.audio import synth_song, write_wav
    from metamusic.tiny import write_all

    spent = {"calls": 0, "seconds": 0.0}
    real_fsync = os.fsync

    def timed_fsync(fd: int) -> None:
        t0 = time.perf_counter()
        real_fsync(fd)
        spent["seconds"] += time.perf_counter() - t0
        spent["calls"] += 1

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = write_all(work / "models", seed=0)
        song = write_wav(work / "song.wav", synth_song(a.seconds, 16000, bpm=120, seed=1), 16000)
        os.fsync = timed_fsync
        t0 = time.perf_counter()
        code = generate_main(["-ap", str(song), "-conf", models["vqgan_config"], "-ckpt", models["vqgan_checkpoint"],
                              "-m", models["clip"], "--wav2clip_checkpoint", models["wav2clip"], "-gid", "cpu",
                              "-s", "32", "32", "--fps", "10", "-ips", "4", "-cuts", "4", "--precision", "fp32",
                              "-sd", "7", "-o", str(work / "v.mp4")])
        wall = time.perf_counter() - t0
        os.fsync = real_fsync
    if code != 0:
        sys.exit(f"render failed with exit status {code}")
    print(json.dumps({"fsync_calls": spent["calls"], "fsync_s": round(spent["seconds"], 4),
                      "render_s": round(wall, 2), "share": round(spent["seconds"] / wall, 5)}))


if __name__ == "__main__":
    main()
