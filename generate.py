#!/usr/bin/env python
"""Turn a song (and its lyrics) into a VQGAN-CLIP music video. See README.md for every flag.

    python generate.py -vid -ap song.mp3 -lyr lyrics/song.csv -gid 0 -o outputs/song.mp4
"""

import sys

from metamusic.cli import generate_main

if __name__ == "__main__":
    sys.exit(generate_main())
