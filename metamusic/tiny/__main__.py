"""``python -m metamusic.tiny DIR [--seed N]``: write tiny checkpoints, print their paths as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from metamusic.tiny import write_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metamusic.tiny", description=__doc__)
    parser.add_argument("directory", help="folder to write the checkpoints into (created)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    paths = write_all(args.directory, seed=args.seed)
    for role, path in paths.items():
        print(f"{role}: {path}", file=sys.stderr)
    print(json.dumps(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
