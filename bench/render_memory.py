#!/usr/bin/env python
"""Peak memory of a whole render at 1x and 2x the song length (frames must stream, not pile up).

Renders a synthetic song of ``--seconds`` and of twice that with the tiny checkpoints on the CPU,
each in its own process, and reports each process's peak resident memory (ru_maxrss; ffmpeg runs
in child processes of its own and is not counted). The last line is one JSON object::

    python bench/render_memory.py [--seconds 20] [--fps 30] [--size 128]

Frames are written to ffmpeg as they are made and the renderer keeps only the current image, so
the 2x peak should be within a few percent of the 1x peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs generate.py in this process and prints the peak RSS (KiB on Linux) as the last line.
_CHILD = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def render_peak_kib(song: Path, models: dict[str, str], out: Path, fps: float, size: int) -> int:
    args = [sys.executable, "-c", _CHILD, str(ROOT / "generate.py"), "-ap", str(song),
            "-conf", models["vqgan_config"], "-ckpt", models["vqgan_checkpoint"], "-m", models["clip"],
            "--wav2clip_checkpoint", models["wav2clip"], "-gid", "cpu", "-s", str(size), str(size),
            "--fps", str(fps), "-ips", "10", "-cuts", "4", "-sd", "1", "-o", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"render failed:\n{proc.stderr[-2000:]}")
    return int(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the 1x song")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)

    from metamusic.song.audio import synth_song, write_wav
    from metamusic.tiny import write_all

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = write_all(tmp / "models")
        peaks = {}
        for factor in (1, 2):
            song = write_wav(tmp / f"song{factor}.wav", synth_song(args.seconds * factor, 16000, seed=3), 16000)
            peaks[factor] = render_peak_kib(song, models, tmp / f"out{factor}" / "v.mp4", args.fps, args.size)
            print(f"{args.seconds * factor:.0f} s song: peak RSS {peaks[factor] / 1024:.1f} MiB", file=sys.stderr)
    result = {
        "seconds_1x": args.seconds,
        "peak_mib_1x": round(peaks[1] / 1024, 1),
        "peak_mib_2x": round(peaks[2] / 1024, 1),
        "ratio_2x_over_1x": round(peaks[2] / peaks[1], 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
