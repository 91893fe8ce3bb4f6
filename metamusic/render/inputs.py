"""Step 1 of a render: every input checked before any model loads.

Files (song, lyrics, images, model files), sizes and the places the render will write are
validated up front; a problem is one :class:`~metamusic.errors.InputError` line naming the file
and the fix, and nothing has been written yet.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from metamusic.config import Config
from metamusic.errors import InputError
from metamusic.song.audio import Audio
from metamusic.song.lyrics import Lyrics

if TYPE_CHECKING:
    from metamusic.models.vqgan import VQGANConfig

log = logging.getLogger("metamusic")


@dataclass(frozen=True)
class Inputs:
    """Validated inputs: the decoded song and lyrics, the output paths, the image size."""

    duration: float
    audio: Audio | None  # at config.music.sample_rate
    lyrics: Lyrics | None
    output: Path
    run_dir: Path
    size: tuple[int, int]
    factor: int


def output_paths(config: Config) -> tuple[Path, Path]:
    """Final video path and run folder: ``-o X.mp4`` -> X.mp4; ``-o X.png`` -> X.mp4 beside it."""
    out = Path(config.output.output).expanduser()
    video = out if out.suffix.lower() == ".mp4" else out.with_suffix(".mp4")
    run_dir = Path(config.output.run_dir) if config.output.run_dir else video.with_name(video.stem + ".run")
    return video, run_dir


def check_inputs(config: Config) -> Inputs:
    """Validate files, sizes and device up front; raise InputError naming the file and the problem."""
    from metamusic.devices import check_device
    from metamusic.optim.prompts import parse_prompt
    from metamusic.validate import validate

    validate(config)  # every setting, also when check_inputs is called on its own (experiments/run.py)
    check_device(config.device)  # a resumed run folder may name a GPU this machine does not have
    music = config.music
    if music.audio is None and not config.prompts.prompts and not config.prompts.image_prompts:
        raise InputError("nothing to render: give a song with -ap (and lyrics with -lyr) or prompts with -p")
    if music.lyrics and not music.audio:
        raise InputError(f"{music.lyrics}: lyrics need a song: add -ap SONG")
    audio, lyrics = _check_song(config)
    vq = _check_model_files(config, needs_audio=audio is not None)
    size = _check_size(config, vq.factor)
    images = [config.prompts.init_image] + [parse_prompt(p)[0] for p in config.prompts.image_prompts]
    for p in filter(None, images):
        _check_image(Path(p))

    # The output video and the run folder must be creatable (nothing is created yet).
    video, run_dir = output_paths(config)
    _check_writable(video, "the output video")
    _check_writable(run_dir, "the run folder", folder=True)
    duration = audio.duration if audio is not None else 0.0
    seconds = duration if audio is not None else config.prompts.iterations / config.output.fps
    latent = vq.embed_dim * (size[0] // vq.factor) * (size[1] // vq.factor)
    estimate = estimate_disk_bytes(seconds, config.output.fps, size, latent, _estimate_segments(config, seconds, lyrics))
    _warn_disk_space(run_dir, estimate)
    return Inputs(duration, audio, lyrics, video, run_dir, size, vq.factor)


def _check_song(config: Config) -> tuple[Audio | None, Lyrics | None]:
    """The decoded song (complete, longer than a frame) and its lyrics, clipped to the song."""
    from metamusic.models.clip import token_count
    from metamusic.optim.prompts import compose_prompt
    from metamusic.song.audio import load_audio, probe_audio
    from metamusic.song.lyrics import clip_to_duration, read_lyrics, warn_long_lines

    music = config.music
    audio = lyrics = None
    if music.audio:
        info = probe_audio(music.audio)  # cheap: missing / empty / unreadable / not audio
        audio = load_audio(music.audio, sample_rate=music.sample_rate)
        _check_complete_audio(Path(music.audio), info.duration, audio.duration)
        if audio.duration < 1.0 / config.output.fps:
            raise InputError(f"{music.audio}: the song is shorter than one frame ({audio.duration:.3f} s)")
    if music.lyrics:
        lyrics = clip_to_duration(read_lyrics(music.lyrics, music.lyrics_format), audio.duration if audio else 0.0)
        warn_long_lines(lyrics, token_count, compose=lambda t: compose_prompt(t, config.prompts.prompt_prefix,
                                                                             config.prompts.theme))
    return audio, lyrics


def _check_model_files(config: Config, needs_audio: bool) -> VQGANConfig:
    """Every model file exists and is not an HTML page; returns the VQGAN's config (its size factor)."""
    from metamusic.models.checkpoint_io import check_model_file
    from metamusic.models.clip import (
        available_models,
        clip_download_hint,
        resolve_clip_path,
    )
    from metamusic.models.vqgan_loader import download_hint, read_vqgan_config

    models = config.models
    check_model_file(models.vqgan_config, "VQGAN config", download_hint(models.vqgan_config))
    check_model_file(models.vqgan_checkpoint, "VQGAN checkpoint", download_hint(models.vqgan_checkpoint))
    vq = read_vqgan_config(models.vqgan_config)
    if needs_audio:
        check_model_file(models.wav2clip_checkpoint, "Wav2CLIP checkpoint",
                         "download it with: bash download_models.sh wav2clip")
    clip_path = resolve_clip_path(models.clip_model, models.checkpoints_dir)
    if clip_path == Path(models.clip_model).expanduser() and not clip_path.exists():  # no OpenAI name, no file
        raise InputError(f"-m {models.clip_model}: unknown CLIP model: not one of {', '.join(available_models())} "
                         "and no such model file")
    check_model_file(clip_path, "CLIP model", clip_download_hint(models.clip_model))
    return vq


def _check_size(config: Config, factor: int) -> tuple[int, int]:
    """The frame size: -s (or the device's default) rounded down to the VQGAN's factor, even."""
    from metamusic.devices import default_size

    size = tuple(config.output.size) if config.output.size else default_size(torch.device(config.device))
    rounded = tuple(max(factor, (s // factor) * factor) for s in size)
    if any(s < factor for s in size):
        raise InputError(f"-s {size[0]} {size[1]}: below the model's minimum of {factor} pixels (its downsampling factor)")
    if rounded != size:
        log.warning("size %sx%s is not a multiple of %d: using %sx%s", *size, factor, *rounded)
    if any(s % 2 for s in rounded):
        raise InputError(f"-s {rounded[0]} {rounded[1]}: video sizes must be even")
    return rounded


def _check_complete_audio(path: Path, announced: float, decoded: float) -> None:
    """InputError if the song is truncated: fewer samples than its header announces, or a short WAV."""
    if decoded < 0.9 * announced - 0.1 and not _duration_is_estimated(path):
        raise InputError(f"{path}: truncated audio: only {decoded:.2f} s of the {announced:.2f} s its header "
                         "announces can be decoded; re-export or re-download the song")
    try:
        with path.open("rb") as f:
            head = f.read(12)
        size = path.stat().st_size
    except OSError:
        return
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        announced_bytes = int.from_bytes(head[4:8], "little") + 8
        # 0 and 0xFFFFFFFF mark streamed WAVs whose writer could not seek back to fill the size in.
        if head[4:8] not in (b"\0\0\0\0", b"\xff\xff\xff\xff") and announced_bytes - size > 4096:
            raise InputError(f"{path}: truncated WAV file: {size} bytes of the {announced_bytes} its header "
                             "announces; re-export or re-download the song")


def _duration_is_estimated(path: Path) -> bool:
    """True when ffmpeg only estimates the file's duration from its bitrate (VBR mp3 without a header)."""
    from metamusic.media.ffmpeg import run_ffmpeg

    proc = run_ffmpeg(["-i", "file:" + os.path.abspath(path)], check=False)
    return "Estimating duration from bitrate" in proc.stderr


def _check_image(path: Path) -> None:
    """InputError unless ``path`` is an image PIL can open."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        raise InputError(f"{path}: not an image PIL can read") from None


def _check_writable(target: Path, what: str, *, folder: bool = False) -> None:
    """InputError unless ``target`` (a file, or a folder when ``folder``) can be created and written.

    Nothing is created: the nearest existing ancestor must be a folder that accepts a file.
    """
    if target.exists() and target.is_dir() != folder:
        kind = "a folder" if target.is_dir() else "a file"
        raise InputError(f"{target}: cannot write {what} there: it is {kind}")
    parent = target if folder and target.exists() else target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{target}: cannot write {what}: {parent} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".metamusic-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"{target}: cannot write {what}: {parent} is not writable ({exc.strerror})") from None


def _estimate_segments(config: Config, seconds: float, lyrics: Lyrics | None) -> int:
    """Rough number of segments before planning: ~3 beats/s, two per lyric interval, or story phrases."""
    if config.music.audio is None:
        every = config.prompts.change_prompt_every
        return max(1, -(-config.prompts.iterations // every) if every > 0 else 1)
    if config.music.mode == "interpolate":
        if lyrics is not None and lyrics.lines:
            return 2 * len(lyrics.lines) + 1
        return max(1, math.ceil(seconds / max(config.music.video_length, 1e-3)))
    return max(1, math.ceil(seconds * 3))


def estimate_disk_bytes(seconds: float, fps: float, size: tuple[int, int], latent_numel: int, segments: int) -> int:
    """Bytes a render writes: videos at ~0.1 bit/pixel (x264 crf 17) twice, plus one state per segment.

    A state holds the latent, its starting copy and two Adam moments (4 x ``latent_numel``
    float32) and the segment's last frame (3 x W x H float32).
    """
    w, h = size
    videos = 2 * seconds * fps * w * h * 0.1 / 8
    states = segments * 4 * (4 * latent_numel + 3 * w * h)
    return int(videos + states)


def _warn_disk_space(folder: Path, estimate: int) -> None:
    """Log a warning when the file system holding ``folder`` has less free space than ``estimate``."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < estimate:
        log.warning("%s: only %.0f MB free on its disk, the render needs about %.0f MB (videos and "
                    "per-segment states); free some space or choose another -o/--run_dir",
                    folder, free / 1e6, estimate / 1e6)
