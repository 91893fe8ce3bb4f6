#!/usr/bin/env python
"""Optimisation steps and seconds per second of finished video: frame mode, keyframe mode, previews.

    python bench/video_cost.py                 # real sizes, random weights, 256x256: ~2-4 min on 2 CPU cores
    python bench/video_cost.py --size 512      # the paper's 512x512 (slower to measure)
    python bench/video_cost.py --quick         # the tiny test checkpoints at 64x64, fp32: a smoke test
    python bench/video_cost.py --count-only    # only the exact step counts (no models)

Settings, each on the example song (examples/paper_boat.mp3 with lyrics/example.csv, 8 s):
frame mode at ``-ips 0`` (Music2Video's volume-scaled 10 + 110 x peak volume steps per second of
music), keyframe mode with one keyframe per segment (the default), ``--keyframe_every 4``,
``--keyframe_every line``, ``--preview`` (frame mode, 128x128, 3 steps per segment, 8 cut-outs),
and ``--keyframe_every 4 --keyframe_steps 50`` (the default before warm-started keyframes took 20 steps).

Counts are exact: each setting's flags go through generate.py's parser and the render's own
timeline and plan (metamusic.render.plan), and the steps are summed over its tasks. Seconds are
an estimate from measurements at real size: steps x the median time of one optimisation step
(metamusic.optim.Stepper with the setting's step settings: size, cut-outs, precision) + decoded
frames x the time of decoding one frame (keyframe mode decodes every output frame from an
interpolated latent, in batches of 4; frame mode's frames are its steps' images). Writing the
video, the sheets and loading the models are left out. Real architectures (f16_16384 VQGAN,
CLIP ViT-B/32) get random weights as in bench/step.py: the cost does not depend on the values.

One line per setting, then as the LAST line one JSON object with every figure and
``every4_fewer_steps_x`` = frame mode's steps per second of video / ``--keyframe_every 4``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

SONG = ROOT / "examples" / "paper_boat.mp3"
LYRICS = ROOT / "lyrics" / "example.csv"

# name -> the flags that make the setting (on top of the song, size and seed)
SETTINGS: dict[str, list[str]] = {
    "frame_ips0": ["-ips", "0"],
    "keyframes_per_segment": ["--keyframes"],
    "keyframe_every_4": ["--keyframes", "--keyframe_every", "4"],
    "keyframe_every_line": ["--keyframes", "--keyframe_every", "line"],
    "preview": ["--preview"],
    "keyframe_every_4_steps_50": ["--keyframes", "--keyframe_every", "4", "--keyframe_steps", "50"],
}


# --------------------------------------------------------------------------- counting (exact, no models)


def count_setting(flags: Sequence[str], size: int, song: Path = SONG, lyrics: Path | None = LYRICS,
                  work: Path | None = None) -> dict[str, Any]:
    """Steps, keyframes and frames of one setting, from the plan generate.py would run."""
    from metamusic.cli import parse_config
    from metamusic.config import Config
    from metamusic.render import resolve_config
    from metamusic.render.inputs import Inputs, output_paths
    from metamusic.render.plan import make_plan, song_timeline, task_steps
    from metamusic.render.prepare import step_config
    from metamusic.song.audio import load_audio
    from metamusic.song.lyrics import clip_to_duration, read_lyrics
    from metamusic.song.timeline import frame_count
    from metamusic.validate import validate

    out = (work or Path(tempfile.gettempdir())) / "video_cost.mp4"  # never written: names only
    argv = ["-ap", str(song), *(["-lyr", str(lyrics)] if lyrics else []), "-gid", "cpu", "-s", str(size), str(size),
            "-sd", "0", "-o", str(out), *flags]
    config, _ = parse_config(argv, "generate.py", "", Config())
    config = resolve_config(config)  # --preview: its own size and names, as a render resolves them
    validate(config)
    audio = load_audio(str(song), sample_rate=config.music.sample_rate)
    lines = clip_to_duration(read_lyrics(lyrics), audio.duration) if lyrics else None
    video, run_dir = output_paths(config)
    inputs = Inputs(audio.duration, audio, lines, video, run_dir, tuple(config.output.size), 16)
    segments, analysis = song_timeline(config, inputs)
    plan = make_plan(config, inputs, segments, analysis)
    steps = sum(task_steps(config, plan, t) for t in plan.tasks)
    frames = frame_count(plan.duration, plan.fps)
    step = step_config(config)
    return {
        "flags": " ".join(flags),
        "segments": len(plan.segments),
        "keyframes": len(plan.keyframe_groups),
        "steps": steps,
        "frames": frames,
        "decoded_frames": frames if plan.keyframes else 0,  # at most: a frame equal to the one before is reused
        "video_seconds": round(plan.duration, 4),
        "steps_per_video_second": round(steps / plan.duration, 3),
        "size": list(plan.size),
        "cutn": step.cutn,
        "precision": step.precision,
    }


def count_all(size: int, song: Path = SONG, lyrics: Path | None = LYRICS) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        return {name: count_setting(flags, size, song, lyrics, Path(tmp)) for name, flags in SETTINGS.items()}


def fewer_steps(counts: dict[str, dict[str, Any]], name: str = "keyframe_every_4") -> float:
    """How many times fewer steps per second of video ``name`` takes than frame mode at -ips 0."""
    return counts["frame_ips0"]["steps_per_video_second"] / counts[name]["steps_per_video_second"]


# --------------------------------------------------------------------------- timing (estimates)


def models_for(quick: bool, device: torch.device, work: Path) -> tuple[Any, Any]:
    if quick:
        from step import tiny_models

        return tiny_models(device, work / "tiny")
    from step import real_models

    return real_models(device)


def step_seconds(vqgan: Any, perceptor: Any, size: int, cutn: int, precision: str, device: torch.device,
                 steps: int, warmup: int) -> float:
    """Median seconds of one optimisation step (Stepper) at size x size with ``cutn`` cut-outs."""
    from metamusic.optim import StepConfig, Stepper, Target, random_latent

    grid = (size // vqgan.factor, size // vqgan.factor)
    gen = torch.Generator().manual_seed(0)
    z = random_latent(vqgan.codebook.float().cpu(), grid, gen).to(device)
    targets = [Target(torch.randn(1, perceptor.embed_dim, generator=gen).to(device))]
    stepper = Stepper(vqgan, perceptor, StepConfig(cutn=cutn, precision=precision), z)
    times = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        stepper.step(targets, 1000 + i, index=i)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def decode_seconds(vqgan: Any, size: int, precision: str, device: torch.device, batches: int) -> float:
    """Median seconds per frame of keyframe mode's frame decoding (quantise + decode, FRAME_BATCH at a time)."""
    from metamusic.optim import random_latent
    from metamusic.optim.keyframes import decode_frames
    from metamusic.render.keyframe_mode import FRAME_BATCH

    grid = (size // vqgan.factor, size // vqgan.factor)
    gen = torch.Generator().manual_seed(1)
    z = torch.cat([random_latent(vqgan.codebook.float().cpu(), grid, gen) for _ in range(FRAME_BATCH)]).to(device)
    times = []
    for i in range(1 + batches):
        _sync(device)
        t0 = time.perf_counter()
        decode_frames(vqgan, z, precision)
        _sync(device)
        if i:  # the first call warms up
            times.append((time.perf_counter() - t0) / FRAME_BATCH)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="image size of the full renders (default 256; --quick 64)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=3, help="timed steps per size (median; default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--decode-batches", type=int, default=3, help="timed decoder calls of 4 frames (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="tiny test checkpoints instead of the real architectures")
    p.add_argument("--count-only", action="store_true", help="only the exact counts; no models, no timing")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.size or (64 if args.quick else 256)
    device = torch.device(args.device)
    counts = count_all(size)
    result: dict[str, Any] = {"song": str(SONG.relative_to(ROOT)), "lyrics": str(LYRICS.relative_to(ROOT)),
                              "models": "tiny" if args.quick else "f16_16384 + ViT-B/32, random weights",
                              "device": str(device), "threads": torch.get_num_threads(), "size": size,
                              "load_average_1min": round(os.getloadavg()[0], 2)}  # a busy machine slows steps
    timing: dict[tuple[int, int, str], float] = {}
    decoding: dict[tuple[int, str], float] = {}
    if not args.count_only:
        with tempfile.TemporaryDirectory() as tmp:
            vqgan, perceptor = models_for(args.quick, device, Path(tmp))
            for c in counts.values():
                key = (c["size"][0], c["cutn"], "fp32" if args.quick else c["precision"])  # tiny: bf16 does not pay
                if key not in timing:
                    timing[key] = step_seconds(vqgan, perceptor, key[0], key[1], key[2], device, args.steps,
                                               args.warmup)
                    print(f"one step at {key[0]}x{key[0]}, {key[1]} cut-outs, precision {key[2]}: "
                          f"{timing[key]:.3f} s", file=sys.stderr)
                if c["decoded_frames"] and (key[0], key[2]) not in decoding:
                    decoding[(key[0], key[2])] = decode_seconds(vqgan, key[0], key[2], device, args.decode_batches)
                    print(f"one decoded frame at {key[0]}x{key[0]}: {decoding[(key[0], key[2])]:.3f} s",
                          file=sys.stderr)
        result["step_s"] = {f"{s}x{s}/{n}": round(v, 4) for (s, n, _), v in timing.items()}
        result["decode_frame_s"] = {f"{s}x{s}": round(v, 4) for (s, _), v in decoding.items()}
    for name, c in counts.items():
        line = (f"{name:<26} {c['steps']:>5} steps  {c['steps_per_video_second']:>7.2f} steps/s of video  "
                f"{c['keyframes']:>3} keyframes  {c['decoded_frames']:>4} decoded frames  {c['size'][0]}x{c['size'][1]}/"
                f"{c['cutn']}")
        if timing:
            key = (c["size"][0], c["cutn"], "fp32" if args.quick else c["precision"])
            seconds = c["steps"] * timing[key] + c["decoded_frames"] * decoding.get((key[0], key[2]), 0.0)
            c["seconds"] = round(seconds, 2)
            c["seconds_per_video_second"] = round(seconds / c["video_seconds"], 2)
            line += f"  ~{c['seconds_per_video_second']:.1f} s per s of video"
        print(line)
    result["settings"] = counts
    result["every4_fewer_steps_x"] = round(fewer_steps(counts), 2)
    result["every4_steps50_fewer_steps_x"] = round(fewer_steps(counts, "keyframe_every_4_steps_50"), 2)
    result["target_10x_met"] = result["every4_fewer_steps_x"] >= 10
    if timing:
        result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
        frame = counts["frame_ips0"]["seconds_per_video_second"]
        result["every4_less_time_x"] = round(frame / counts["keyframe_every_4"]["seconds_per_video_second"], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
