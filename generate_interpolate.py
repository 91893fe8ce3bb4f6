#!/usr/bin/env python
"""Lyric-interval music video: each lyric interval morphs from its text to its audio.

    python generate_interpolate.py -vid -ips 100 -ap song.mp3 -lyr lyrics/song.csv -gid 0
"""

import sys

from metamusic.cli import interpolate_main

if __name__ == "__main__":
    sys.exit(interpolate_main())
