#!/usr/bin/env python
"""Join a render's segment videos in numeric order and mux the song.

    python combine_mp4.py --dirs RUN_DIR [MORE_DIRS ...] --music song.mp3 --output video.mp4 [--reencode]

See metamusic/combine.py for the rules (ordering, length, refusal of mismatched segments).
"""

import sys

from metamusic.cli import run_cli
from metamusic.media.combine import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
