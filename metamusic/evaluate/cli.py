"""``evaluate.py``: flags (or a run folder) -> inputs checked, models loaded, the video scored, a report written."""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from metamusic.errors import InputError
from metamusic.evaluate.report import write_report
from metamusic.evaluate.scoring import EvaluationResult, evaluate

log = logging.getLogger("metamusic")


def build_parser() -> argparse.ArgumentParser:
    from metamusic.helpformat import make_parser

    p = make_parser(
        "evaluate.py",
        "Score a music video: CLIP alignment with its lyrics and audio, smoothness, A/V sync.\n"
        "Writes metrics.csv (one row per segment), summary.json and plot.png.",
        examples=("{prog} outputs/song.run", "{prog} outputs/song.mp4 -ap song.mp3 -lyr lyrics/song.csv -o eval/song"),
    )
    p.add_argument("video", help="the rendered video (mp4), or a run folder (config.yaml, storyboard.yaml)")
    p.add_argument("-ap", "--audio_prompt", help="the song (default: the run folder's, else the video's own sound)")
    p.add_argument("-lyr", "--lyrics", help="timed lyric file (default: the run folder's)")
    p.add_argument("--lyrics_format", choices=["m2v-csv", "plain", "screenplay-csv", "lrc", "srt"])
    p.add_argument("-m", "--clip_model", help="CLIP name (ViT-B/32, ViT-B/16, RN50) or a file")
    p.add_argument("--wav2clip_checkpoint", help="Wav2CLIP.pt")
    # Accepted so the model flags of generate.py can be passed as they are; scoring needs no VQGAN.
    p.add_argument("-conf", "--vqgan_config", help="ignored (accepted for the same flags as generate.py)")
    p.add_argument("-ckpt", "--vqgan_checkpoint", help="ignored (accepted for the same flags as generate.py)")
    p.add_argument("--checkpoints_dir", help="folder where CLIP names are looked up")
    p.add_argument("--trust_torchscript", action="store_true", default=None,
                   help="load a CLIP TorchScript archive whose SHA-256 is not a published one")
    p.add_argument("-gid", "--gpu_id", help="GPU index to use, or 'cpu'")
    p.add_argument("-cd", "--cuda_device", help="device name (cuda:0, cpu)")
    p.add_argument("--every", type=int, default=1, help="evaluate every Nth frame (default: 1)")
    p.add_argument("--batch", type=int, default=16, help="frames per CLIP batch (default: 16)")
    p.add_argument("-o", "--output", help="output folder (default: <video>.eval beside the video)")
    return p


@dataclass
class _Plan:
    """What the command line resolved: files, models, segments, output folder."""

    video: Path
    audio: Path
    lyrics: Path | None
    lyrics_format: str | None
    models: Any  # metamusic.config.ModelConfig
    segments: list[Any] | None
    outdir: Path
    fps: float | None = None  # a run folder's configured frame rate
    render: dict[str, Any] | None = None  # a run folder's run.json totals


def _resolve(args: argparse.Namespace) -> _Plan:
    """Flags (and a run folder's config.yaml / storyboard.yaml) -> a _Plan; flags win over the folder."""
    from metamusic.config import Config, ModelConfig

    target = Path(args.video).expanduser()
    models = ModelConfig()
    audio, lyrics, fmt, segments, fps = args.audio_prompt, args.lyrics, args.lyrics_format, None, None
    render = None
    if target.is_dir():
        from metamusic.runfolder import RunFolder

        run = RunFolder(target)
        if not run.config_path.is_file():
            raise InputError(f"{target}: not a run folder (no config.yaml) and not a video file")
        config = Config.load(run.config_path)
        models = config.models
        o = config.output  # the final video's rate: -ofps when it was motion-interpolated
        fps = float(o.output_video_fps if o.output_video_fps > 9 else o.fps)
        audio = audio or config.music.audio
        if lyrics is None:
            lyrics, fmt = config.music.lyrics, fmt or config.music.lyrics_format
        if run.storyboard_path.is_file():
            segments = run.read_storyboard()
        render = _render_totals(run)
        out = Path(config.output.output).expanduser()
        video = out if out.suffix.lower() == ".mp4" else out.with_suffix(".mp4")
        if not video.is_file():
            beside = target.parent / (target.name[: -len(".run")] + ".mp4") if target.name.endswith(".run") else None
            if beside is None or not beside.is_file():
                raise InputError(f"{video}: the run's final video does not exist (render it, or join its "
                                 "segments with combine_mp4.py, then pass the video)")
            video = beside
        default_out = target / "evaluation"
    else:
        video = target
        if not video.exists():
            raise InputError(f"{video}: no such video file")
        default_out = video.with_name(video.stem + ".eval")
    for name in ("clip_model", "wav2clip_checkpoint", "checkpoints_dir", "trust_torchscript"):
        if getattr(args, name) is not None:
            setattr(models, name, getattr(args, name))
    if audio is None:
        audio = str(video)  # the video's own sound track (checked to exist below)
        log.info("no -ap given: using the sound track of %s", video)
    return _Plan(video, Path(audio).expanduser(), Path(lyrics).expanduser() if lyrics else None, fmt, models,
                 segments, Path(args.output).expanduser() if args.output else default_out, fps, render)


def _render_totals(run: Any) -> dict[str, Any] | None:
    """What the render cost, from run.json's totals (written by the renderer), or None if absent."""
    totals = run.read_info().get("totals")
    if not isinstance(totals, dict) or not isinstance(totals.get("steps"), (int, float)):
        return None
    keys = ("tasks", "tasks_finished", "steps", "frames", "seconds")
    return {k: totals[k] for k in keys if isinstance(totals.get(k), (int, float))}


def _check_song(plan: _Plan) -> tuple[Any, Any]:
    """Check the video and load the song (16 kHz) and its lyrics clipped to it: (Audio, Lyrics or None)."""
    from metamusic.media.video import probe
    from metamusic.song.audio import load_audio, probe_audio
    from metamusic.song.lyrics import clip_to_duration, read_lyrics

    info = probe(plan.video)
    if not info.has_video or not info.video_frames:
        raise InputError(f"{plan.video}: no video stream to evaluate")
    if plan.audio == plan.video and not info.has_audio:
        raise InputError(f"{plan.video}: the video has no sound track; pass the song with -ap SONG")
    probe_audio(plan.audio)
    audio = load_audio(plan.audio, sample_rate=16000)
    lyrics = None
    if plan.lyrics is not None:
        lyrics = clip_to_duration(read_lyrics(plan.lyrics, plan.lyrics_format), audio.duration)
    return audio, lyrics


def _check_models_and_output(plan: _Plan) -> None:
    """InputError unless the CLIP and Wav2CLIP files exist and the output folder can be created (it is)."""
    from metamusic.models.checkpoint_io import check_model_file
    from metamusic.models.clip import resolve_clip_path

    hint = "download it with: bash download_models.sh"
    m = plan.models
    check_model_file(resolve_clip_path(m.clip_model, m.checkpoints_dir), "CLIP model", f"{hint} clip_vit_b32")
    check_model_file(m.wav2clip_checkpoint, "Wav2CLIP checkpoint", f"{hint} wav2clip")
    try:
        plan.outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{plan.outdir}: cannot create the output folder ({exc.strerror})") from None


def _load_models(m: Any, device: Any) -> tuple[Any, Any]:
    """(CLIP perceptor, Wav2CLIP) of the ModelConfig ``m`` on ``device``."""
    from metamusic.models.clip import load_clip
    from metamusic.models.wav2clip_loader import load_wav2clip

    perceptor = load_clip(m.clip_model, device, checkpoints_dir=m.checkpoints_dir,
                          trust_torchscript=bool(m.trust_torchscript))
    wav2clip = load_wav2clip(m.wav2clip_checkpoint, device)
    return perceptor, wav2clip


def _print_summary(plan: _Plan, result: EvaluationResult, paths: dict[str, Path]) -> None:
    """The overall scores, the A/V sync, the render's cost and the files written, on stdout."""
    o, s = result.overall, result.sync
    fmt = lambda x: "n/a" if not math.isfinite(x) else f"{x:.4f}"  # noqa: E731
    print(f"{plan.video}: {len(result.frame_index)} frames, {len(result.segments)} segments ({result.segment_source})")
    print(f"text alignment {fmt(o['text_alignment'])}  audio alignment {fmt(o['audio_alignment'])}  "
          f"smoothness {fmt(o['smoothness'])}  pixel change {fmt(o['pixel_change'])}")
    print(f"A/V: video {s['video_duration']:.3f} s, audio {s['audio_duration']:.3f} s "
          f"({'in sync' if s['within_one_frame'] else 'OUT OF SYNC'}, {s['difference']:+.3f} s)")
    if plan.render is not None:
        r = plan.render
        print(f"render (run.json): {r['steps']} optimisation steps, {r.get('seconds', 0.0):.1f} s over "
              f"{r.get('tasks_finished', '?')} of {r.get('tasks', '?')} tasks")
    print(f"wrote {paths['csv']}, {paths['json']}, {paths['plot']}")


def main(argv: Sequence[str] | None = None) -> int:
    """``evaluate.py``: validate inputs, load CLIP and Wav2CLIP, score the video, write the report."""
    from metamusic.devices import resolve_device

    args = build_parser().parse_args(argv)
    if args.every < 1:
        raise InputError(f"--every {args.every}: must be >= 1")
    if args.batch < 1:
        raise InputError(f"--batch {args.batch}: must be >= 1")

    # 1. Validate every input before any model loads.
    plan = _resolve(args)
    audio, lyrics = _check_song(plan)
    device = resolve_device(args.gpu_id, args.cuda_device)
    _check_models_and_output(plan)

    # 2. Models.
    perceptor, wav2clip = _load_models(plan.models, device)

    # 3. Score and report.
    result = evaluate(plan.video, audio, lyrics, perceptor, wav2clip, segments=plan.segments,
                      every=args.every, batch=args.batch, fps=plan.fps)
    result.render = plan.render
    paths = write_report(result, plan.outdir)
    _print_summary(plan, result, paths)
    return 0
