#!/usr/bin/env python
"""Score a music video: CLIP alignment with its lyrics and audio, smoothness, A/V sync.

    python evaluate.py VIDEO -ap song.mp3 [-lyr lyrics.csv] -o OUTDIR
    python evaluate.py RUN_DIR -o OUTDIR

Writes OUTDIR/metrics.csv (one row per segment), summary.json and plot.png.
See metamusic/evaluate/__init__.py for what each number means.
"""

import sys

from metamusic.cli import run_cli
from metamusic.evaluate import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
