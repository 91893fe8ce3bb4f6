#!/usr/bin/env python
"""Score a music video: CLIP alignment with its lyrics and audio, smoothness, A/V sync.

    python evaluate.py VIDEO -ap song.mp3 [-lyr lyrics.csv] -o OUTDIR
    python evaluate.py RUN_DIR -o OUTDIR

Writes OUTDIR/metrics.csv (one row per segment), summary.json and plot.png.
See metamusic/evaluate.py for what each number means.
"""

import logging
import sys

from metamusic.errors import MetaMusicError
from metamusic.evaluate import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        sys.exit(main(sys.argv[1:]))
    except MetaMusicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
