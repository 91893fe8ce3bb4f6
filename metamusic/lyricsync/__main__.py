"""``python -m metamusic.lyricsync transcribe|align``: write timed lyrics (.lrc, .srt, .csv) from a song.

    python -m metamusic.lyricsync transcribe song.mp3 -o song.lrc
    python -m metamusic.lyricsync align song.mp3 lyrics.txt -o song.srt --model checkpoints/whisper_small.pt
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from metamusic.models.whisper_loader import DEFAULT_WHISPER

log = logging.getLogger("metamusic.lyricsync")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m metamusic.lyricsync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", required=True,
                        help="timed lyric file to write; its suffix picks the format: .lrc, .srt or .csv "
                             "(Music2Video timestamp,text)")
    common.add_argument("--model", default=DEFAULT_WHISPER,
                        help=f"Whisper checkpoint file, or small/base/medium in --checkpoints_dir (default: {DEFAULT_WHISPER})")
    common.add_argument("--language", default=None, help="language code such as en or fr (default: detected)")
    common.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: a GPU if there is one)")
    common.add_argument("--checkpoints_dir", default="checkpoints", help="folder where model names are looked up")
    t = commands.add_parser("transcribe", parents=[common], help="write the lyrics from the song, one line per phrase")
    t.add_argument("song", help="the song (any audio file ffmpeg reads)")
    a = commands.add_parser("align", parents=[common], help="time a plain lyric text (one line per lyric line)")
    a.add_argument("song", help="the song (any audio file ffmpeg reads)")
    a.add_argument("lyrics", help="plain text, one lyric line per line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, write the timed lyrics; return 0 (errors are raised for run_cli)."""
    from metamusic import lyricsync
    from metamusic.devices import resolve_device
    from metamusic.song.lyric_writers import check_output_suffix, write_timed_lyrics
    from metamusic.song.lyrics import read_lyrics

    args = _parser().parse_args(argv)
    out = check_output_suffix(args.output)
    device = str(resolve_device(None, args.device)) if args.device else str(resolve_device())
    options = {"language": args.language, "device": device, "checkpoints_dir": args.checkpoints_dir}
    if args.command == "align" and lyricsync.has_timestamps(args.lyrics):
        log.info("%s already has timestamps: written to %s as they are (align only times plain text)",
                 args.lyrics, out)
        lines = read_lyrics(args.lyrics).lines
    elif args.command == "align":
        lines = lyricsync.align(args.song, args.lyrics, args.model, **options).lines
    else:
        lines = lyricsync.transcribe(args.song, args.model, **options)
    write_timed_lyrics(out, lines)
    print(f"wrote {out} ({len(lines)} lines)")
    return 0


if __name__ == "__main__":
    from metamusic.console import run_cli

    sys.exit(run_cli(main))
