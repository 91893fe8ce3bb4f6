"""``combine_mp4.py``: join rendered segment videos in numeric order and mux the song.

Segments are the ``*.mp4`` files of each given directory (``RUN_DIR/segments/`` when a run folder
is given), ordered by the last integer in their names, so ``0.mp4, 1.mp4, 2.mp4, ..., 10.mp4``
(the original project's unpadded names) and ``segment_00000.mp4, ...`` both come out in order.
Directories are joined in the order given. Segments are stream-copied; segments that differ in
codec, size, pixel format or frame rate are refused unless ``--reencode`` (which re-encodes
everything to the first segment's size and rate).

Length: with ``--music`` the output lasts as long as the SHORTER of the joined video and the
song (the video is cut to the nearest frame, the audio to the sample), and a warning is logged
when the two differ by more than one frame. Without music the output is the joined video.
Nothing is written at ``--output`` unless the whole job succeeds.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from metamusic.errors import InputError
from metamusic.media import video

log = logging.getLogger(__name__)

__all__ = ["CombineResult", "build_parser", "collect_segments", "combine_segments", "main", "segment_number"]

OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov")


def segment_number(path: Path) -> int | None:
    """The last integer in a file's stem (``segment_00012`` -> 12, ``10`` -> 10), or None."""
    found = re.findall(r"\d+", Path(path).stem)
    return int(found[-1]) if found else None


def _segments_in(directory: Path, exclude: Path | None) -> tuple[list[Path], list[Path]]:
    """Numbered segment files of one directory in numeric order, and the unnumbered ones skipped."""
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory")
    source = directory / "segments" if (directory / "segments").is_dir() else directory
    files = [
        p for p in source.iterdir()
        if p.suffix.lower() == ".mp4" and not p.name.startswith(".") and p.is_file()
        and (exclude is None or p.resolve() != exclude)
    ]
    numbered: dict[int, Path] = {}
    skipped: list[Path] = []
    for path in sorted(files):
        number = segment_number(path)
        if number is None:
            skipped.append(path)
        elif number in numbered:
            raise InputError(f"{path}: segment number {number} is also used by {numbered[number].name}; "
                             "remove one of them")
        else:
            numbered[number] = path
    if not numbered:
        raise InputError(f"{source}: no numbered *.mp4 segment files")
    return [numbered[n] for n in sorted(numbered)], skipped


def collect_segments(dirs: Sequence[Path | str], exclude: Path | str | None = None) -> tuple[list[Path], list[Path]]:
    """All segment files of ``dirs`` (each sorted numerically, directories in the given order), plus skipped files."""
    if not dirs:
        raise InputError("no segment directories given (--dirs)")
    excluded = Path(exclude).resolve() if exclude is not None else None
    segments: list[Path] = []
    skipped: list[Path] = []
    for d in dirs:
        found, ignored = _segments_in(Path(d), excluded)
        segments += found
        skipped += ignored
    return segments, skipped


@dataclass
class CombineResult:
    """What :func:`combine_segments` wrote."""

    output: Path
    segments: list[Path]
    stream_copy: bool
    frames: int
    fps: float
    duration: float  # seconds: frames / fps, or the music length when that was shorter
    warnings: list[str] = field(default_factory=list)


def _check_output(output: Path) -> None:
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"{output}: the output must be an mp4 file (end in .mp4)")
    if output.is_dir():
        raise InputError(f"{output}: is a directory; give a file name ending in .mp4")
    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: output directory does not exist; create it first")


def _check_music(music: Path) -> video.MediaInfo:
    if not music.is_file():
        raise InputError(f"{music}: music file not found")
    try:
        info = video.probe(music, count_frames=False)
    except InputError:
        raise InputError(f"{music}: not an audio file ffmpeg can read") from None
    if not info.has_audio:
        raise InputError(f"{music}: has no audio stream")
    if not info.duration:
        raise InputError(f"{music}: cannot tell the length of this audio file; convert it to wav or mp3")
    return info


def combine_segments(
    dirs: Sequence[Path | str],
    output: Path | str,
    music: Path | str | None = None,
    reencode: bool = False,
) -> CombineResult:
    """Join the numbered segments of ``dirs`` into ``output`` and mux ``music`` (see module docstring)."""
    # 1. validate everything before writing anything
    output = Path(output)
    _check_output(output)
    segments, skipped = collect_segments(dirs)
    if output.resolve() in {p.resolve() for p in segments}:
        raise InputError(f"{output}: the output would overwrite one of the segments; write it elsewhere")
    warnings = [f"ignored {p}: no number in its name" for p in skipped]
    music_info = _check_music(Path(music)) if music is not None else None
    infos = []
    for path in segments:
        info = video.probe(path)
        if not info.has_video or not info.video_frames:
            raise InputError(f"{path}: not a video segment (no video frames)")
        infos.append(info)

    # 2. refuse segments that cannot be stream-copied together, unless re-encoding
    mismatch = video.first_mismatch(infos)
    if mismatch is not None and not reencode:
        bad, why = mismatch
        raise InputError(f"{bad.path}: segment does not match the first one ({why}); pass --reencode to re-encode")

    # 3. the output length: the shorter of the video and the song
    fps = float(infos[0].fps)
    video_seconds = sum(i.video_frames / float(i.fps) for i in infos)
    duration = None
    if music_info is not None:
        duration = min(video_seconds, music_info.duration)
        if abs(video_seconds - music_info.duration) > 1.0 / fps:
            warnings.append(
                f"the segments last {video_seconds:.3f} s but {Path(music).name} lasts {music_info.duration:.3f} s; "
                f"the output is cut to {duration:.3f} s"
            )

    # 4. join (stream copy unless re-encoding), mux, and move into place
    result = video.concat_videos(
        segments, output, audio=music, duration=duration, reencode=True if reencode else False, infos=infos,
    )
    for message in warnings:
        log.warning("warning: %s", message)
    return CombineResult(
        output=output, segments=segments, stream_copy=result.stream_copy, frames=result.frames, fps=result.fps,
        duration=duration if duration is not None else result.frames / result.fps, warnings=warnings,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``combine_mp4.py`` command line."""
    from metamusic.helpformat import make_parser

    parser = make_parser(
        "combine_mp4.py", "Join rendered segment videos in numeric order and mux the song.",
        examples=("{prog} --dirs outputs/song.run --music song.mp3 -o outputs/song.mp4",
                  "{prog} --dirs part1.run part2.run --reencode -o outputs/both.mp4"),
    )
    parser.add_argument("--dirs", nargs="+", required=True, metavar="DIR",
                        help="run folders (their segments/ subfolder is used) or folders of numbered *.mp4 files")
    parser.add_argument("--music", metavar="AUDIO", help="song to mux as AAC; the output lasts as long as the "
                                                         "shorter of the video and the song")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.mp4", help="combined video to write")
    parser.add_argument("--reencode", action="store_true",
                        help="re-encode (needed when segments differ in size, frame rate or codec)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``combine_mp4.py`` arguments and combine; raises MetaMusicError for bad input."""
    args = build_parser().parse_args(argv)
    result = combine_segments(args.dirs, args.output, music=args.music, reencode=args.reencode)
    mode = "stream copy" if result.stream_copy else "re-encoded"
    log.info("wrote %s: %d segments, %d frames at %g fps, %.3f s (%s)", result.output, len(result.segments),
             result.frames, result.fps, result.duration, mode)
    return 0
