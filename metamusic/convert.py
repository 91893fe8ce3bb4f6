"""``python -m metamusic.convert SRC [DST]``: convert a CLIP checkpoint to safetensors, once.

OpenAI's CLIP files are TorchScript archives, which cannot be loaded weights-only; MetaMusic
accepts them only when their SHA-256 is a published one (or with ``--trust_torchscript``). The
converted ``.safetensors`` file holds the same weights and loads weights-only from then on; a
CLIP name such as ``-m ViT-B/32`` prefers ``checkpoints/ViT-B-32.safetensors`` when it exists.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from metamusic.console import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    from metamusic.models.clip import convert_to_safetensors, resolve_clip_path

    parser = argparse.ArgumentParser(prog="python -m metamusic.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="CLIP file or name (ViT-B/32, ViT-B/16, RN50: looked up in --checkpoints_dir)")
    parser.add_argument("dst", nargs="?", help="output file (default: SRC with the suffix .safetensors)")
    parser.add_argument("--checkpoints_dir", default="checkpoints")
    parser.add_argument("--trust_torchscript", action="store_true",
                        help="convert an archive whose SHA-256 is not a published one")
    args = parser.parse_args(argv)
    src = resolve_clip_path(args.src, args.checkpoints_dir)
    dst = Path(args.dst) if args.dst else src.with_suffix(".safetensors")
    out = convert_to_safetensors(src, dst, trust_torchscript=args.trust_torchscript)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
