"""The render pipeline behind generate.py and generate_interpolate.py.

``generate(config)`` runs these named steps:

1. ``check_inputs``: every file, size and device checked before any model loads.
2. ``plan``: the song's timeline (segments and their prompts) and the frame schedule.
3. ``open_run``: the run folder (config, storyboard), resuming a previous render if it matches.
4. ``load_models``: VQGAN, CLIP and (when a segment needs audio) Wav2CLIP.
5. ``encode_targets``: text and audio embeddings, computed once per segment, never per step.
6. ``render_segments``: per segment, :func:`metamusic.optim.stepper.optimise_segment` (a pure
   function of configuration, targets and starting latent) streams frames to a segment video;
   a state file is saved after each segment.
7. ``finish``: concatenate the segments, mux the song, write the output atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from metamusic import __version__
from metamusic.config import Config
from metamusic.errors import InputError, Interrupted, MetaMusicError
from metamusic.files import atomic_path
from metamusic.runfolder import RunFolder, config_differences
from metamusic.song.timeline import Segment
from metamusic.validate import validate

log = logging.getLogger("metamusic")

MIN_AUDIO_WINDOW = 0.25  # seconds: shorter audio windows are widened around their centre


# ---------------------------------------------------------------------------------------------
# 1. inputs
# ---------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    """Validated inputs: the decoded song and lyrics, the output paths, the image size."""

    duration: float
    audio: Any  # metamusic.song.audio.Audio at config.music.sample_rate, or None
    lyrics: Any  # metamusic.song.lyrics.Lyrics or None
    output: Path
    run_dir: Path
    size: tuple[int, int]
    factor: int
    beats: Any = None  # beat times (s), filled in by plan() in beat mode
    envelope: Any = None  # (times, volume) of the song, filled in by plan()


def output_paths(config: Config) -> tuple[Path, Path]:
    """Final video path and run folder: ``-o X.mp4`` -> X.mp4; ``-o X.png`` -> X.mp4 beside it."""
    out = Path(config.output.output).expanduser()
    video = out if out.suffix.lower() == ".mp4" else out.with_suffix(".mp4")
    run_dir = Path(config.output.run_dir) if config.output.run_dir else video.with_name(video.stem + ".run")
    return video, run_dir


def check_inputs(config: Config) -> Inputs:
    """Validate files, sizes and device up front; raise InputError naming the file and the problem."""
    from metamusic.devices import default_size
    from metamusic.models.checkpoint_io import check_model_file
    from metamusic.models.vqgan_loader import read_vqgan_config
    from metamusic.song.audio import load_audio, probe_audio
    from metamusic.song.lyrics import clip_to_duration, read_lyrics

    music = config.music
    if music.audio is None and not config.prompts.prompts and not config.prompts.image_prompts:
        raise InputError("nothing to render: give a song with -ap (and lyrics with -lyr) or prompts with -p")
    if music.lyrics and not music.audio:
        raise InputError(f"{music.lyrics}: lyrics need a song: add -ap SONG")
    if music.mode not in ("m2v", "fused", "interpolate"):
        raise InputError(f"--mode {music.mode}: expected m2v or fused")
    if music.ips < 0:
        raise InputError(f"-ips {music.ips}: steps per second cannot be negative")
    if config.output.fps <= 0:
        raise InputError(f"--fps {config.output.fps}: must be positive")

    # The song and its lyrics.
    audio = lyrics = None
    duration = 0.0
    if music.audio:
        info = probe_audio(music.audio)  # cheap: missing / empty / unreadable / not audio
        audio = load_audio(music.audio, sample_rate=music.sample_rate)
        _check_complete_audio(Path(music.audio), info.duration, audio.duration)
        duration = audio.duration
        if duration < 1.0 / config.output.fps:
            raise InputError(f"{music.audio}: the song is shorter than one frame ({duration:.3f} s)")
    if music.lyrics:
        lyrics = clip_to_duration(read_lyrics(music.lyrics, music.lyrics_format), duration)
        from metamusic.models.clip import token_count
        from metamusic.song.lyrics import warn_long_lines

        warn_long_lines(lyrics, token_count, compose=lambda t: compose_prompt(t, config.prompts.prompt_prefix,
                                                                             config.prompts.theme))

    # Models: the files exist and are not HTML pages; the VQGAN config gives the size factor.
    from metamusic.models.vqgan_loader import download_hint

    hint = "download it with: bash download_models.sh"
    check_model_file(config.models.vqgan_config, "VQGAN config", download_hint(config.models.vqgan_config))
    check_model_file(config.models.vqgan_checkpoint, "VQGAN checkpoint", download_hint(config.models.vqgan_checkpoint))
    vq = read_vqgan_config(config.models.vqgan_config)
    needs_audio_model = audio is not None
    if needs_audio_model:
        check_model_file(config.models.wav2clip_checkpoint, "Wav2CLIP checkpoint", f"{hint} wav2clip")
    from metamusic.models.clip import (
        available_models,
        clip_download_hint,
        resolve_clip_path,
    )

    clip_name = config.models.clip_model
    clip_path = resolve_clip_path(clip_name, config.models.checkpoints_dir)
    if clip_path == Path(clip_name).expanduser() and not clip_path.exists():  # not an OpenAI name, not a file
        raise InputError(f"-m {clip_name}: unknown CLIP model: not one of {', '.join(available_models())} "
                         "and no such model file")
    check_model_file(clip_path, "CLIP model", clip_download_hint(clip_name))

    # Size: a multiple of the VQGAN's downsampling factor.
    factor = vq.factor
    size = tuple(config.output.size) if config.output.size else default_size(torch.device(config.device))
    rounded = tuple(max(factor, (s // factor) * factor) for s in size)
    if any(s < factor for s in size):
        raise InputError(f"-s {size[0]} {size[1]}: below the model's minimum of {factor} pixels (its downsampling factor)")
    if rounded != size:
        log.warning("size %sx%s is not a multiple of %d: using %sx%s", *size, factor, *rounded)
    if any(s % 2 for s in rounded):
        raise InputError(f"-s {rounded[0]} {rounded[1]}: video sizes must be even")

    from metamusic.optim.prompts import parse_prompt

    images = [config.prompts.init_image] + [parse_prompt(p)[0] for p in config.prompts.image_prompts]
    for p in filter(None, images):
        _check_image(Path(p))

    # The output video and the run folder must be creatable (nothing is created yet).
    video, run_dir = output_paths(config)
    _check_writable(video, "the output video")
    _check_writable(run_dir, "the run folder", folder=True)
    seconds = duration if audio is not None else config.prompts.iterations / config.output.fps
    segments = _estimate_segments(config, seconds, lyrics)
    latent = vq.embed_dim * (rounded[0] // factor) * (rounded[1] // factor)
    _warn_disk_space(run_dir, estimate_disk_bytes(seconds, config.output.fps, rounded, latent, segments))
    return Inputs(duration, audio, lyrics, video, run_dir, rounded, factor)


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
    from metamusic.media.video import ffmpeg_exe

    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", "file:" + os.path.abspath(path)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
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


def _estimate_segments(config: Config, seconds: float, lyrics: Any) -> int:
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


# ---------------------------------------------------------------------------------------------
# 2. plan
# ---------------------------------------------------------------------------------------------
def plan(config: Config, inputs: Inputs) -> list[Segment]:
    """The song's segments and what drives each (see metamusic.song.timeline)."""
    from metamusic.song import timeline

    music = config.music
    if inputs.audio is None:
        return plain_segments(config)
    envelope = timeline.volume_envelope(inputs.audio)
    inputs.envelope = envelope
    if music.mode == "interpolate":
        segments = timeline.interpolate_segments(
            inputs.duration, inputs.lyrics, ips=music.ips, video_length=music.video_length, envelope=envelope
        )
    else:
        inputs.beats = timeline.detect_beats(inputs.audio)
        segments = timeline.beat_segments(
            inputs.duration, inputs.beats, inputs.lyrics, ips=music.ips, envelope=envelope, mode=music.mode,
            text_weight=music.text_weight, audio_weight=music.audio_weight,
        )
    if config.output.preview:
        segments = [dataclasses.replace(seg, steps=min(seg.steps, config.output.preview_steps)) for seg in segments]
    return segments


def plain_segments(config: Config) -> list[Segment]:
    """A run without a song: ``-i`` steps of the ``-p`` prompts, one segment per story phrase."""
    from metamusic.optim.prompts import split_story

    phrases = split_story(config.prompts.prompts or "")
    total = config.prompts.iterations
    every = config.prompts.change_prompt_every
    n = len(phrases) if every <= 0 else max(1, -(-total // every))
    n = min(n, total) if every > 0 else 1
    segments = []
    step0 = 0
    for i in range(n):
        steps = total - step0 if i == n - 1 else every
        text = phrases[i % len(phrases)] if phrases else None
        t0, t1 = step0 / config.output.fps, (step0 + steps) / config.output.fps
        segments.append(Segment(index=i, start=t0, end=t1, steps=steps, kind="text", text=text,
                                lyric_index=None, text_weight=1.0, audio_weight=0.0,
                                audio_start=t0, audio_end=t1))
        step0 += steps
    return segments


# ---------------------------------------------------------------------------------------------
# 3. run folder
# ---------------------------------------------------------------------------------------------
def open_run(config: Config, inputs: Inputs, segments: list[Segment], *, resume: bool = True,
             force: bool = False, from_segment: int | None = None) -> tuple[RunFolder, list[Segment], int]:
    """Create or resume the run folder; return it, the storyboard to render and the first segment.

    A run folder made with the same settings is resumed after its last finished segment (its
    storyboard, which the user may have edited, replaces ``segments``); other settings are
    refused with the differences named, unless ``force`` starts the folder over.
    ``from_segment`` re-renders from that segment on, keeping earlier segment files untouched.
    """
    run = RunFolder(inputs.run_dir)
    saved = run.saved_config()
    if from_segment is not None:
        if force:
            raise InputError(f"--from_segment {from_segment}: cannot be combined with --force "
                             "(--force starts the run over; --from_segment re-renders part of it)")
        if saved is None or not run.storyboard_path.exists():
            raise InputError(f"--from_segment {from_segment}: {run.root} holds no render to re-render; "
                             "render it first (same command without --from_segment)")
    start = 0
    if saved is not None and (resume or from_segment is not None) and not force:
        diffs = config_differences(saved, config)
        if diffs:
            raise InputError(
                f"{run.root}: this run folder was made with other settings ({'; '.join(diffs[:3])}"
                f"{'; ...' if len(diffs) > 3 else ''}); use --force to start it over, or another -o/--run_dir"
            )
        if run.storyboard_path.exists():
            segments = _checked_storyboard(run, segments)  # the user may have edited prompts
            start = _resumable_from(run, segments, config.output.fps)
            if from_segment is not None:
                if not 0 <= from_segment < len(segments):
                    raise InputError(f"--from_segment {from_segment}: {run.storyboard_path} has segments "
                                     f"0..{len(segments) - 1}")
                if from_segment > start:
                    raise InputError(f"--from_segment {from_segment}: only {start} segment(s) are finished in "
                                     f"{run.root}; resume it first (same command without --from_segment)")
                start = from_segment
            for i in run.edited_segments(segments, below=start):
                log.warning("%s: segment %d was edited after it was rendered; its video keeps the old "
                            "prompt (re-render it with --from_segment %d)", run.storyboard_path, i, i)
            if start == len(segments):
                log.info("%s: all %d segments are already rendered; assembling the video", run.root, start)
            elif start:
                log.info("resuming %s at segment %d of %d", run.root, start, len(segments))
    run.clear_from(start)
    temp_output = _partial_name(inputs.output)
    if temp_output.exists():
        temp_output.unlink()
    run.create()
    inputs.output.parent.mkdir(parents=True, exist_ok=True)
    run.write_config(config)
    run.write_storyboard(segments)
    return run, segments, start


def _partial_name(path: Path) -> Path:
    from metamusic.media.video import temp_path_for

    return temp_path_for(path)


def _checked_storyboard(run: RunFolder, planned: list[Segment]) -> list[Segment]:
    """The run's storyboard, checked against the song's timeline (only prompts may be edited)."""
    segments = run.read_storyboard()
    if len(segments) != len(planned):
        raise InputError(f"{run.storyboard_path}: {len(segments)} segments, but the song's timeline has "
                         f"{len(planned)}; only prompts may be edited (use --force to start over)")
    for i, (seg, plan_seg) in enumerate(zip(segments, planned)):
        if seg.index != i or abs(seg.start - plan_seg.start) > 1e-6 or abs(seg.end - plan_seg.end) > 1e-6:
            raise InputError(
                f"{run.storyboard_path}: segment {i} has index {seg.index}, {seg.start:g}-{seg.end:g} s but the "
                f"song's timeline says {i}, {plan_seg.start:g}-{plan_seg.end:g} s; segment times cannot be edited "
                "(use --force to start over)"
            )
        if seg.kind == "audio" and seg.text and seg.text != plan_seg.text:
            log.warning("%s: segment %d is an audio segment, so its text is not used (set kind: text or "
                        "fused to use it)", run.storyboard_path, i)
    return segments


def _resumable_from(run: RunFolder, segments: list[Segment], fps: float) -> int:
    """Finished segments whose state is readable: a damaged last state is dropped and re-rendered."""
    from metamusic.song.timeline import frame_schedule

    frameless = {span.segment for span in frame_schedule(segments, fps) if span.n_frames == 0}
    start = run.finished_segments(limit=len(segments), frameless=frameless)
    while start > 0:
        try:
            run.load_state(start - 1)
            return start
        except InputError as exc:
            log.warning("%s; re-rendering segment %d", exc, start - 1)
            start -= 1
    return start


def run_info(config: Config) -> dict[str, Any]:
    """Versions and model files (size and SHA-256) for run.json."""
    from metamusic.models.clip import resolve_clip_path

    files = {}
    clip = resolve_clip_path(config.models.clip_model, config.models.checkpoints_dir)
    for role, path in (("vqgan_config", config.models.vqgan_config), ("vqgan_checkpoint", config.models.vqgan_checkpoint),
                       ("clip", clip), ("wav2clip_checkpoint", config.models.wav2clip_checkpoint)):
        p = Path(path)
        if p.is_file():
            files[role] = {"path": str(p), "size": p.stat().st_size, "sha256": _sha256(p)}
    return {
        "metamusic": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "model_files": files,
    }


def _sha256(path: Path) -> str:
    from metamusic.download import sha256_of

    return sha256_of(path)


# ---------------------------------------------------------------------------------------------
# 4. models
# ---------------------------------------------------------------------------------------------
@dataclass
class Models:
    vqgan: Any
    perceptor: Any
    wav2clip: Any | None


def load_models(config: Config, need_audio: bool) -> Models:
    from metamusic.models.clip import load_clip
    from metamusic.models.vqgan_loader import load_vqgan
    from metamusic.models.wav2clip_loader import load_wav2clip

    device = torch.device(config.device)
    vqgan = load_vqgan(config.models.vqgan_config, config.models.vqgan_checkpoint, device=device)
    perceptor = load_clip(config.models.clip_model, device=device, checkpoints_dir=config.models.checkpoints_dir,
                          trust_torchscript=config.models.trust_torchscript)
    wav2clip = load_wav2clip(config.models.wav2clip_checkpoint, device=device) if need_audio else None
    if wav2clip is not None and perceptor.embed_dim != wav2clip.embed_dim:
        raise InputError(
            f"{config.models.clip_model}: CLIP embeds into {perceptor.embed_dim}-d but Wav2CLIP into "
            f"{wav2clip.embed_dim}-d (CLIP ViT-B/32 space): use -m ViT-B/32 or ViT-B/16 with audio prompts"
        )
    return Models(vqgan, perceptor, wav2clip)


# ---------------------------------------------------------------------------------------------
# 5. targets
# ---------------------------------------------------------------------------------------------
def encode_targets(config: Config, inputs: Inputs, segments: Sequence[Segment], models: Models) -> list[list[Any]]:
    """The prompt targets of every segment, computed once before any step."""
    from metamusic.optim.prompts import Target, noise_targets, split_prompts

    device = torch.device(config.device)
    perceptor = models.perceptor
    with torch.no_grad():
        # Global prompts (-p for songs, -ip, noise prompts) apply to every segment.
        shared: list[Target] = []
        if inputs.audio is not None and config.prompts.prompts:
            shared += _text_targets(perceptor, split_prompts(config.prompts.prompts))
        for path in config.prompts.image_prompts:
            shared.append(_image_target(config, perceptor, path))
        if config.prompts.noise_prompt_seeds:
            shared += noise_targets(config.prompts.noise_prompt_seeds, config.prompts.noise_prompt_weights,
                                    perceptor.embed_dim, device=device)

        text_cache: dict[str, torch.Tensor] = {}
        audio16 = _audio_16k(config, inputs)
        per_segment = []
        for seg in segments:
            targets = list(shared)
            if seg.text and seg.kind in ("text", "fused"):
                if inputs.audio is None:
                    targets += _text_targets(perceptor, split_prompts(seg.text))
                else:
                    text = compose_prompt(seg.text, config.prompts.prompt_prefix, config.prompts.theme)
                    if text not in text_cache:
                        text_cache[text] = _unit(perceptor.encode_text([text]).float())
                    weight = seg.text_weight if seg.kind == "fused" else 1.0
                    targets.append(Target(text_cache[text], weight))
            if seg.kind in ("audio", "fused") and models.wav2clip is not None:
                weight = seg.audio_weight if seg.kind == "fused" else 1.0
                emb = _audio_embedding(models.wav2clip, audio16, seg.audio_start, seg.audio_end, device)
                targets.append(Target(emb, weight))
            if not targets:
                raise MetaMusicError(f"segment {seg.index} has no prompt (no text, audio or image prompt)")
            per_segment.append(targets)
    return per_segment


def compose_prompt(text: str, prefix: str | None = None, theme: str | None = None) -> str:
    """A lyric's CLIP prompt: ``"<prefix> <lyric>, <theme>"`` (--prompt_prefix, --theme)."""
    text = text.strip()
    if prefix and prefix.strip():
        text = f"{prefix.strip()} {text}"
    if theme and theme.strip():
        text = f"{text.rstrip(' ,.')}, {theme.strip()}"
    return text


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def _text_targets(perceptor: Any, prompts: Sequence[str]) -> list[Any]:
    from metamusic.optim.prompts import Target, parse_prompt

    out = []
    for p in prompts:
        text, weight, stop = parse_prompt(p)
        out.append(Target(_unit(perceptor.encode_text([text]).float()), weight, stop))
    return out


def _image_target(config: Config, perceptor: Any, path: str) -> Any:
    from PIL import Image

    from metamusic.optim.prompts import Target, parse_prompt

    file, weight, stop = parse_prompt(path)
    try:
        img = Image.open(file).convert("RGB")
    except OSError:
        raise InputError(f"{file}: not an image PIL can read") from None
    side = perceptor.input_resolution
    img = img.resize((side, side), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x = x.to(config.device)
    emb = perceptor.encode_image(perceptor.normalize(x)).float()
    return Target(_unit(emb), weight, stop)


def _audio_16k(config: Config, inputs: Inputs) -> Any:
    """The song at 16 kHz for Wav2CLIP (reuses the analysis signal when -sf is 16000)."""
    if inputs.audio is None:
        return None
    if inputs.audio.sample_rate == 16000:
        return inputs.audio
    from metamusic.song.audio import load_audio

    return load_audio(config.music.audio, sample_rate=16000)


def _audio_embedding(wav2clip: Any, audio: Any, start: float, end: float, device: torch.device) -> torch.Tensor:
    """Unit Wav2CLIP embedding of the song between ``start`` and ``end`` seconds (1, 512).

    Windows shorter than MIN_AUDIO_WINDOW are widened around their centre so the spectrogram
    has enough frames (a beat segment can be a few hundredths of a second).
    """
    sr = audio.sample_rate
    if end - start < MIN_AUDIO_WINDOW:
        mid = (start + end) / 2
        start, end = mid - MIN_AUDIO_WINDOW / 2, mid + MIN_AUDIO_WINDOW / 2
        shift = max(0.0, -start) - max(0.0, end - audio.duration)
        start, end = start + shift, end + shift
    a, b = max(0, int(round(start * sr))), min(len(audio.samples), int(round(end * sr)))
    clip = torch.from_numpy(np.ascontiguousarray(audio.samples[a:b], dtype=np.float32)).to(device)
    return _unit(wav2clip(clip.unsqueeze(0)).float())


# ---------------------------------------------------------------------------------------------
# 6. segments
# ---------------------------------------------------------------------------------------------
@dataclass
class RenderStats:
    steps: int = 0
    step_seconds: float = 0.0
    wall_seconds: float = 0.0
    frames: int = 0
    io_wait_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def initial_latent(config: Config, inputs: Inputs, models: Models, generator: torch.Generator) -> torch.Tensor:
    """Random codebook tokens, or the encoding of --init_image / --init_noise (REFERENCE.md s2)."""
    from PIL import Image

    from metamusic.optim.init import noise_image, random_latent

    device = torch.device(config.device)
    w, h = inputs.size
    grid = (h // inputs.factor, w // inputs.factor)
    image = None
    if config.prompts.init_image:
        try:
            pil = Image.open(config.prompts.init_image).convert("RGB").resize((w, h), Image.LANCZOS)
        except OSError:
            raise InputError(f"{config.prompts.init_image}: not an image PIL can read") from None
        image = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    elif config.prompts.init_noise:
        image = noise_image(config.prompts.init_noise, (w, h), generator)
        if not isinstance(image, torch.Tensor):
            image = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    if image is not None:
        with torch.no_grad():
            return models.vqgan.encode(image.to(device) * 2 - 1).float()
    return random_latent(models.vqgan.codebook.float().cpu(), grid, generator).to(device)


def step_config(config: Config) -> Any:
    from metamusic.optim.stepper import StepConfig

    s = config.step
    cutn = min(s.cutn, 8) if config.output.preview else s.cutn
    return StepConfig(cut_method=s.cut_method, cutn=cutn, cut_pow=s.cut_pow, augments=tuple(s.augments),
                      optimiser=s.optimiser, lr=s.lr, init_weight=s.init_weight, precision=s.precision,
                      compile=s.compile, low_memory=s.low_memory)


def render_segments(config: Config, inputs: Inputs, run: RunFolder, segments: list[Segment], start: int,
                    targets: list[list[Any]], models: Models, on_segment: Any = None) -> RenderStats:
    """Optimise and write every segment from ``start`` on, saving a state after each one."""
    from tqdm import tqdm

    from metamusic.media.video import FrameWriter
    from metamusic.optim.stepper import embed_image_prompt, optimise_segment, step_seed
    from metamusic.song.timeline import frame_schedule

    device = torch.device(config.device)
    seed = int(config.seed)
    spans = frame_schedule(segments, config.output.fps)
    scfg = step_config(config)
    stats = RenderStats()

    # The latent and optimiser state entering segment `start`.
    optimiser_state = None
    last_image = None
    if start > 0:
        state = run.load_state(start - 1)
        if state is None:
            raise InputError(f"{run.state_path(start - 1)}: state file missing; re-render with --from_segment 0")
        z = state["z"].to(device)
        z_init = state["z_init"].to(device)
        optimiser_state = state["optimiser"]
        last_image = _from_uint8(state["last_image"]).to(device)
    else:
        gen = torch.Generator().manual_seed(seed)
        z = initial_latent(config, inputs, models, gen)
        z_init = z.clone()

    total_steps = sum(s.steps for s in segments[start:])
    done_before = sum(s.steps for s in segments[:start])  # song step index of this run's first step
    overall = tqdm(total=total_steps, desc="song", unit="step", position=0, dynamic_ncols=True,
                   disable=None)
    bars = [overall]
    t_wall = time.perf_counter()
    try:
        for seg in segments[start:]:
            span = spans[seg.index]
            first_targets = []
            if last_image is not None:
                gen = torch.Generator(device=device).manual_seed(step_seed(seed, seg.index, -1))
                first_targets = [embed_image_prompt(
                    models.perceptor, last_image, gen, cut_method=scfg.cut_method, cutn=scfg.cutn,
                    cut_pow=scfg.cut_pow, augments=scfg.augments, precision=scfg.precision)]
            bar = tqdm(total=seg.steps, desc=f"segment {seg.index + 1}/{len(segments)}", unit="step",
                       position=1, leave=False, dynamic_ncols=True, disable=None)
            bars.append(bar)
            frame_steps = span.step_of_frame
            cursor = {"frame": 0, "image": None}
            w, h = inputs.size
            with FrameWriter(run.segment_video(seg.index), config.output.fps, (w, h), crf=config.output.crf) as writer:

                def on_step(j: int, result: Any) -> None:
                    cursor["image"] = result.image
                    while cursor["frame"] < len(frame_steps) and frame_steps[cursor["frame"]] == j:
                        writer.write(result.image)
                        cursor["frame"] += 1
                    bar.update(1)
                    overall.update(1)
                    every = config.output.save_every
                    song_step = done_before + stats.steps + j
                    if every and song_step % every == 0:  # every N steps of the whole song
                        bar.set_postfix(loss=f"{result.loss:.4f}")
                        losses = " ".join(f"{x:.4f}" for x in result.losses)
                        tqdm.write(f"step {song_step} (segment {seg.index}, {seg.kind}): loss {result.loss:.4f} "
                                   f"[{losses}]", file=sys.stderr)
                        if config.output.save_png:
                            _save_png(run.progress_png, result.image)

                t0 = time.perf_counter()
                z, optimiser_state = optimise_segment(
                    models.vqgan, models.perceptor, scfg, z, targets[seg.index], seg.steps,
                    seed=seed, optimiser_state=optimiser_state, on_step=on_step,
                    first_step_targets=first_targets, segment_index=seg.index, z_init=z_init,
                )
                stats.step_seconds += time.perf_counter() - t0
                stats.steps += seg.steps
                if span.n_frames == 0:
                    writer.abort()
                stats.io_wait_seconds += getattr(writer, "wait_seconds", 0.0)
            stats.frames += span.n_frames
            bar.close()
            # The next segment's image prompt is this frame as 8-bit pixels (the original saved and
            # reloaded it as a PNG); stored that way it also keeps state files small.
            last_pixels = _to_uint8(cursor["image"])
            last_image = _from_uint8(last_pixels).to(device)
            # The video is in place; the state makes the segment count as finished (runfolder.py).
            run.save_state(seg.index, {
                "segment": seg.index,
                "z": z.detach().cpu(),
                "z_init": z_init.detach().cpu(),
                "optimiser": optimiser_state,
                "last_image": last_pixels,
            })
            if on_segment is not None:
                on_segment(seg)
            run.record_rendered(seg)
            log.debug("segment %d (%s) done: %d steps, %d frames", seg.index, seg.kind, seg.steps, span.n_frames)
    finally:
        for b in reversed(bars):
            b.close()
    stats.wall_seconds = time.perf_counter() - t_wall
    return stats


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> (1, 3, H, W) uint8 on the CPU."""
    return image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def _from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Inverse of _to_uint8 (float pixels pass through, for states of older runs)."""
    return pixels.float().div(255) if pixels.dtype == torch.uint8 else pixels.float()


def _save_png(path: Path, image: torch.Tensor) -> None:
    from PIL import Image

    pixels = image if image.dtype == torch.uint8 else _to_uint8(image)
    arr = pixels[0].permute(1, 2, 0).cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def write_timeline_sheet(run: RunFolder, inputs: Inputs, segments: list[Segment]) -> None:
    """timeline.png: the song's volume, beats, lyric markers and segment boundaries."""
    from metamusic.media.sheets import timeline_plot

    if inputs.audio is None:
        return
    times, values = inputs.envelope if inputs.envelope is not None else ([], [])
    beats = [] if inputs.beats is None else list(inputs.beats)
    lines = [(line.start, line.text) for line in inputs.lyrics.lines] if inputs.lyrics is not None else []
    timeline_plot(run.root / "timeline.png", inputs.duration, times, values, beats, lines,
                  [(s.start, s.end, s.kind) for s in segments])


def write_contact_sheet(run: RunFolder, segments: list[Segment], upto: int) -> int:
    """storyboard.png: the last frame of every finished segment with its time and prompt.

    Rewritten as segments finish (every segment for short songs, every 10th for long ones).
    """
    from metamusic.media.sheets import contact_sheet, panel_caption

    if upto < len(segments) - 1 and len(segments) > 50 and upto % 10:
        return 0

    def panels():
        for seg in segments[: upto + 1]:
            state = run.load_state(seg.index)
            if state is None or "last_image" not in state:
                continue
            pixels = state["last_image"]
            pixels = pixels if pixels.dtype == torch.uint8 else _to_uint8(pixels)
            yield pixels[0].permute(1, 2, 0).numpy(), panel_caption(seg.index, seg.start, seg.end, seg.kind, seg.text)

    if not any(run.state_path(s.index).exists() for s in segments[: upto + 1]):
        return 0
    return contact_sheet(panels(), run.root / "storyboard.png")


# ---------------------------------------------------------------------------------------------
# 7. finish
# ---------------------------------------------------------------------------------------------
def finish(config: Config, inputs: Inputs, run: RunFolder, segments: list[Segment]) -> Path:
    """Concatenate the segment videos in order, mux the song and write the output atomically."""
    from metamusic.media.video import concat_videos

    videos = [run.segment_video(s.index) for s in segments if run.segment_video(s.index).exists()]
    audio = Path(config.music.audio) if config.music.audio else None
    duration = inputs.duration if audio is not None else segments[-1].end  # plain runs: every frame
    concat_videos(videos, inputs.output, audio=audio, duration=duration)
    if config.output.captions in ("burn", "both") and inputs.lyrics is not None:
        _burn_captions(config, inputs)
    if config.output.output_video_fps > 9:
        _motion_interpolate(inputs.output, config.output.output_video_fps, duration)
    if config.output.captions in ("srt", "both") and inputs.lyrics is not None:
        _soft_captions(inputs, burned=config.output.captions == "both")
    if Path(config.output.output).suffix.lower() == ".png":
        state = run.load_state(segments[-1].index)
        if state is not None:
            _save_png(Path(config.output.output), state["last_image"])
    return inputs.output


def caption_style(config: Config) -> Any:
    from metamusic.media.captions import CaptionStyle

    o = config.output
    return CaptionStyle(font=o.caption_font, size_frac=o.caption_size, position=o.caption_position)


def _burn_captions(config: Config, inputs: Inputs) -> None:
    """Draw the active lyric on every frame of the final video (re-encoded, song copied)."""
    from metamusic.media.captions import (
        caption_intervals,
        caption_text_at,
        render_caption,
    )
    from metamusic.media.video import FrameWriter, mux_audio, read_frames

    intervals = caption_intervals(inputs.lyrics, inputs.duration)
    style = caption_style(config)
    fps = config.output.fps
    video = inputs.output
    silent = video.with_name(f".{video.stem}.captions.mp4")
    try:
        with FrameWriter(silent, fps, inputs.size, crf=config.output.crf) as writer:
            for k, frame in enumerate(read_frames(video)):  # frame k shows time k / fps
                writer.write(render_caption(frame, caption_text_at(intervals, k / fps), style))
        mux_audio(silent, Path(config.music.audio), video, duration=inputs.duration)
    finally:
        silent.unlink(missing_ok=True)


def _soft_captions(inputs: Inputs, burned: bool = False) -> None:
    """Write ``X.srt`` and ``X.vtt`` beside ``X.mp4`` and embed the SRT as a soft subtitle track
    (not shown by default when the captions are also ``burned`` into the frames)."""
    from metamusic.media.captions import (
        add_soft_subtitles,
        caption_intervals,
        write_srt,
        write_vtt,
    )

    cues = caption_intervals(inputs.lyrics, inputs.duration)
    srt = inputs.output.with_suffix(".srt")
    write_srt(cues, srt)
    write_vtt(cues, inputs.output.with_suffix(".vtt"))
    add_soft_subtitles(inputs.output, srt, inputs.output, default=not burned)


def _motion_interpolate(video: Path, fps: float, duration: float) -> None:
    """Re-time the final video to ``fps`` with ffmpeg's minterpolate (VQGAN-CLIP's -ofps).

    minterpolate drops the last few frames; the last one is repeated so the video keeps exactly
    round(duration * fps) frames.
    """
    import subprocess

    from metamusic.media.video import ffmpeg_exe

    with atomic_path(video) as tmp:
        cmd = [ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-i", str(video),
               "-filter:v", f"minterpolate=fps={fps:g}:mi_mode=mci,tpad=stop_mode=clone:stop_duration=1",
               "-frames:v", str(max(1, round(duration * fps))), "-fps_mode", "cfr", "-r", f"{fps:g}",
               "-c:v", "libx264", "-crf", "17",
               "-pix_fmt", "yuv420p", "-c:a", "copy", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise MetaMusicError(f"{video}: motion interpolation failed ({proc.stderr.strip().splitlines()[-1:]})")


# ---------------------------------------------------------------------------------------------
# the whole pipeline
# ---------------------------------------------------------------------------------------------
def generate(config: Config, *, resume: bool = True, force: bool = False, from_segment: int | None = None) -> Path:
    """Render ``config`` to its output video; return the video's path.

    Ctrl-C (SIGINT) abandons the segment in progress (its partial video is deleted; finished
    segments and their states stay) and raises :class:`Interrupted` saying how to resume.
    """
    with _sigint_watch() as interrupted:
        try:
            return _generate(config, resume=resume, force=force, from_segment=from_segment)
        except KeyboardInterrupt:
            raise Interrupted(resume_hint(config)) from None
        except MetaMusicError:
            if interrupted():  # e.g. ffmpeg, hit by the same Ctrl-C, failed before Python noticed
                raise Interrupted(resume_hint(config)) from None
            raise


def preview_config(config: Config) -> Config:
    """--preview: same timeline and song, small frames, few steps, written beside as X.preview.mp4."""
    if not config.output.preview:
        return config
    video, _ = output_paths(config)
    config.output.output = str(video.with_name(video.stem + ".preview.mp4"))
    if config.output.run_dir:
        config.output.run_dir = str(Path(config.output.run_dir).with_name(Path(config.output.run_dir).name + ".preview"))
    w, h = config.output.size or (128, 128)
    scale = min(1.0, 128 / max(w, h))
    config.output.size = (max(2, int(w * scale)), max(2, int(h * scale)))
    return config


def _generate(config: Config, *, resume: bool, force: bool, from_segment: int | None) -> Path:
    validate(config)  # every flag, before any file is read, model loaded or folder written
    config = preview_config(config)
    resolve_seed(config, resume=resume and not force)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    inputs = check_inputs(config)  # 1
    config.output.size = tuple(inputs.size)
    if config.output.captions in ("burn", "both") and inputs.lyrics is not None:
        from metamusic.media.captions import check_lyrics_font

        check_lyrics_font(inputs.lyrics, config.output.caption_font)
    segments = plan(config, inputs)  # 2
    with RunFolder(inputs.run_dir).locked():
        run, segments, start = open_run(config, inputs, segments, resume=resume, force=force,
                                        from_segment=from_segment)  # 3
        run.write_info(run_info(config))
        if config.output.sheets:
            write_timeline_sheet(run, inputs, segments)
        need_audio = any(s.kind in ("audio", "fused") for s in segments)
        models = load_models(config, need_audio)  # 4
        targets = encode_targets(config, inputs, segments, models)  # 5
        if config.keyframes.enabled:  # 6, keyframe mode
            from metamusic.render.keyframe_mode import render_keyframes

            kf = render_keyframes(config, inputs, run, segments, targets, models, log)
            stats = RenderStats(steps=kf["total_steps"], step_seconds=kf["step_seconds"],
                                wall_seconds=kf["step_seconds"] + kf["frame_seconds"], frames=kf["frames"],
                                io_wait_seconds=kf["io_wait_seconds"], extra=kf)
            for seg in segments:
                run.record_rendered(seg)
        else:
            sheet = (lambda seg: write_contact_sheet(run, segments, upto=seg.index)) if config.output.sheets else None
            stats = render_segments(config, inputs, run, segments, start, targets, models, on_segment=sheet)  # 6
        if config.output.sheets:
            write_contact_sheet(run, segments, upto=len(segments) - 1)
        out = finish(config, inputs, run, segments)  # 7
    share = stats.io_wait_seconds / stats.wall_seconds if stats.wall_seconds else 0.0
    log.info("wrote %s: %d segments, %d steps, %.1f s (%.3f s/step), %.1f%% of wall time waiting on video I/O",
             out, len(segments), stats.steps, stats.wall_seconds,
             stats.step_seconds / max(1, stats.steps), 100 * share)
    return out


def resolve_seed(config: Config, *, resume: bool = True) -> int:
    """Set ``config.seed`` when no -sd was given: the run folder's saved seed when resuming, else a new one."""
    if config.seed is None and resume:
        run = RunFolder(output_paths(config)[1])
        saved = run.saved_config() if run.config_path.is_file() else None
        if saved is not None and saved.seed is not None:
            config.seed = int(saved.seed)
            log.info("seed %d (from %s)", config.seed, run.config_path)
    if config.seed is None:
        config.seed = random.SystemRandom().randrange(2**31)
        log.info("seed %d (pass -sd %d to reproduce this run)", config.seed, config.seed)
    return int(config.seed)


def resume_hint(config: Config) -> str:
    """One line for an interrupted render: what is finished and the command that resumes it."""
    run = RunFolder(output_paths(config)[1])
    if not run.config_path.is_file():
        return "interrupted before rendering started; nothing to resume"
    done = run.finished_segments()
    try:
        total = f" of {len(run.read_storyboard())}"
    except MetaMusicError:
        total = ""
    script = Path(sys.argv[0]).name if Path(sys.argv[0]).name.startswith("generate") else (
        "generate_interpolate.py" if config.music.mode == "interpolate" else "generate.py")
    command = shlex.join(["python", script, "--resume", str(run.root)])
    return (f"interrupted: {done}{total} segments are finished in {run.root}; resume with: {command} "
            "(or run the same command again)")


@contextlib.contextmanager
def _sigint_watch() -> Iterator[Any]:
    """Note whether SIGINT arrived while rendering; Python still raises KeyboardInterrupt as usual.

    Installed only for the duration of a render and only from the main thread (never at import).
    """
    seen = {"sigint": False}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:  # ignored, or someone else's handler: leave it alone
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        seen["sigint"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: seen["sigint"]
    finally:
        signal.signal(signal.SIGINT, previous)
