#!/usr/bin/env python
"""Join a render's segment videos in numeric order and mux the song.

    python combine_mp4.py --dirs RUN_DIR [MORE_DIRS ...] --music song.mp3 --output video.mp4 [--reencode]

See metamusic/combine.py for the rules (ordering, length, refusal of mismatched segments).
"""

import logging
import sys

from metamusic.combine import main
from metamusic.errors import MetaMusicError

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
