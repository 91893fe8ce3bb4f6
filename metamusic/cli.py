"""Command-line front ends: flags -> one :class:`~metamusic.config.Config` -> the library.

Every flag maps to one field of the configuration (``FLAGS``). The layering is: built-in
defaults, then ``--config FILE`` (YAML, e.g. a run folder's saved ``config.yaml``), then the
flags actually typed. Flags keep the names users know from Music2Video and VQGAN-CLIP.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from metamusic.config import Config
from metamusic.errors import InputError, MetaMusicError

log = logging.getLogger("metamusic")


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    target: str | None  # "group.field" in Config, "seed"/"device"/..., or None (CLI-only)
    help: str
    kwargs: dict[str, Any]


def _f(names: str, target: str | None, help: str, **kwargs: Any) -> Flag:
    return Flag(tuple(names.split()), target, help, kwargs)


def _size(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {value}")
    return n


# Flags shared by generate.py and generate_interpolate.py; (names, config target, help, argparse kwargs).
FLAGS: tuple[Flag, ...] = (
    # -- music (Music2Video)
    _f("-ap --audio_prompt", "music.audio", "the song (wav, mp3, flac, ogg, m4a, ...)"),
    _f("-lyr --lyrics", "music.lyrics", "timed lyric file (M2V CSV, plain MM:SS, screen-play CSV, LRC, SRT)"),
    _f("--lyrics_format", "music.lyrics_format", "force the lyric format instead of detecting it",
       choices=["m2v-csv", "plain", "screenplay-csv", "lrc", "srt"]),
    _f("-ips --iterations_per_second", "music.ips",
       "optimisation steps per second of music (generate.py: 0 = 10 + 110 x peak volume)", type=float),
    _f("-sf --audio_sampling_freq", "music.sample_rate", "rate the song is analysed at (Hz)", type=int),
    _f("--mode", "music.mode", "m2v: each segment follows its lyric OR its audio (the original); "
       "fused: weighted sum of the active lyric and the segment's audio", choices=["m2v", "fused"]),
    _f("--text_weight", "music.text_weight", "fused mode: weight of the lyric's text prompt", type=float),
    _f("--audio_weight", "music.audio_weight", "fused mode: weight of the audio prompt", type=float),
    _f("-vl --video_length", "music.video_length",
       "interpolate mode without lyrics: window length in seconds", type=float),
    # -- models
    _f("-conf --vqgan_config", "models.vqgan_config", "VQGAN yaml config"),
    _f("-ckpt --vqgan_checkpoint", "models.vqgan_checkpoint", "VQGAN checkpoint (.ckpt)"),
    _f("-m --clip_model", "models.clip_model", "CLIP name (ViT-B/32, ViT-B/16, RN50) or a file"),
    _f("--wav2clip_checkpoint", "models.wav2clip_checkpoint", "Wav2CLIP.pt"),
    _f("--checkpoints_dir", "models.checkpoints_dir", "folder where CLIP names are looked up"),
    _f("--trust_torchscript", "models.trust_torchscript",
       "load a CLIP TorchScript archive whose SHA-256 is not a published one", action="store_true"),
    # -- prompts (VQGAN-CLIP)
    _f("-p --prompts", "prompts.prompts", "text prompts 'text:weight:stop', '|' separates, '^' story phrases"),
    _f("-ip --image_prompts", "prompts.image_prompts", "image prompts, '|' separated", type=lambda s: [p for p in s.split("|") if p]),
    _f("-nps --noise_prompt_seeds", "prompts.noise_prompt_seeds", "noise prompt seeds", type=int, nargs="*"),
    _f("-npw --noise_prompt_weights", "prompts.noise_prompt_weights", "noise prompt weights", type=float, nargs="*"),
    _f("--theme", "prompts.theme", "style appended to every lyric prompt, e.g. 'oil painting, by Monet'"),
    _f("--prompt_prefix", "prompts.prompt_prefix", "text put before every lyric prompt, e.g. 'a scene of'"),
    _f("-ii --init_image", "prompts.init_image", "start from this image"),
    _f("-in --init_noise", "prompts.init_noise", "start from noise", choices=["pixels", "gradient"]),
    _f("-cpe --change_prompt_every", "prompts.change_prompt_every",
       "move to the next '^' story phrase every N steps (0: never)", type=int),
    _f("-i --iterations", "prompts.iterations", "steps of a run without a song", type=int),
    # -- the optimisation step
    _f("-iw --init_weight", "step.init_weight", "keep the latent near its start", type=float),
    _f("-lr --learning_rate", "step.lr", "learning rate", type=float),
    _f("-cutm --cut_method", "step.cut_method", "cut-out method",
       choices=["original", "updated", "nrupdated", "updatedpooling", "latest"]),
    _f("-cuts --num_cuts", "step.cutn", "cut-outs per step", type=int),
    _f("-cutp --cut_power", "step.cut_pow", "cut-out size power", type=float),
    _f("-opt --optimiser", "step.optimiser", "optimiser",
       choices=["Adam", "AdamW", "Adagrad", "Adamax", "DiffGrad", "AdamP", "RAdam", "RMSprop"]),
    _f("-aug --augments", "step.augments", "augments: Ji Sh Gn Pe Ro Af Et Ts Cr Er Re", nargs="+",
       action="extend"),
    _f("--precision", "step.precision", "fp32 (exact) or mixed precision for decoder and CLIP",
       choices=["fp32", "bf16", "fp16", "auto"]),
    _f("--compile", "step.compile", "torch.compile the decoder and CLIP (slow first step)", action="store_true"),
    _f("--low_memory", "step.low_memory", "gradient checkpointing of the decoder (for 512x512 on 8-11 GB)",
       action="store_true"),
    # -- output
    _f("-o --output", "output.output", "output video (X.mp4; X.png writes X.mp4 beside it)"),
    _f("--run_dir", "output.run_dir", "run folder (default: beside the output, <name>.run)"),
    _f("-s --size", "output.size", "image size W H", type=_size, nargs=2),
    _f("--fps", "output.fps", "frame rate of the video", type=float),
    _f("-ofps --output_video_fps", "output.output_video_fps",
       "> 9: motion-interpolate the final video to this frame rate", type=float),
    _f("--crf", "output.crf", "x264 quality (lower is better)", type=int),
    _f("-se --save_every", "output.save_every", "log (and with --save_png, save a PNG) every N steps", type=int),
    _f("--save_png", "output.save_png", "write the current frame as PNG at each --save_every", action="store_true"),
    # -- keyframe mode
    _f("--keyframes", "keyframes.enabled", "optimise one keyframe per segment and interpolate the frames between",
       action="store_true"),
    _f("--keyframe_steps", "keyframes.steps", "optimisation steps per keyframe", type=int),
    _f("--independent_keyframes", "keyframes.independent",
       "start every keyframe from a fresh latent (default: warm-start from the previous one)", action="store_true"),
    _f("--batch_keyframes", "keyframes.batch", "independent keyframes optimised together in one batch", type=int),
    _f("--interpolation", "keyframes.interpolation", "how frames between keyframes are made",
       choices=["slerp", "lerp"]),
    # -- captions, preview, storyboard sheets
    _f("--captions", "output.captions", "burn: draw the active lyric on the frames; srt: write an .srt and a "
       "soft subtitle track; both", choices=["none", "burn", "srt", "both"]),
    _f("--caption_font", "output.caption_font", "font file for burned captions (must cover the lyrics' script)"),
    _f("--caption_size", "output.caption_size", "caption height as a fraction of the frame height", type=float),
    _f("--caption_position", "output.caption_position", "where burned captions go",
       choices=["bottom", "top", "center"]),
    _f("--preview", "output.preview", "fast low-resolution render of the whole song to check timing and prompts",
       action="store_true"),
    _f("--preview_steps", "output.preview_steps", "steps per segment in a preview", type=int),
    _f("--no_sheets", None, "do not write the storyboard contact sheet and timeline PNGs", action="store_true"),
    # -- run
    _f("-sd --seed", "seed", "random seed (reproduces a run bit-for-bit on CPU)", type=int),
    _f("-gid --gpu_id", None, "GPU index to use, or 'cpu'"),
    _f("-cd --cuda_device", None, "device name (cuda:0, cpu)"),
    _f("-d --deterministic", "deterministic", "use deterministic algorithms", action="store_true"),
    _f("-vid --video", None, "make a video (always on with a song; kept for compatibility)", action="store_true"),
    _f("--config", None, "YAML file setting any of these options (flags override it)"),
    _f("--resume", None, "continue the render in this run folder (re-running the same command does too)"),
    _f("--force", None, "start the run folder over even though its settings differ", action="store_true"),
    _f("--from_segment", None, "re-render from segment K on (after editing storyboard.yaml)", type=int),
    # -- many GPUs and machines (Ray; not part of the configuration: a resume may use other workers)
    _f("--ray", None, "run the tasks on a Ray cluster: auto (the one Ray finds), local (a private one here), "
       "host:port or ray://host:port"),
    _f("--ray_cpus_per_task", None, "on CPU: CPUs (and torch threads) of each Ray worker", type=int),
    _f("--ray_workers", None, "at most this many Ray workers for this render (default: every GPU or CPU slot)",
       type=int),
    # -- accepted for compatibility with VQGAN-CLIP's command lines (not used with a song)
    _f("-zvid --zoom_video", None, "VQGAN-CLIP zoom video (not supported: see README)", action="store_true"),
    _f("-zs --zoom_start", None, argparse.SUPPRESS, type=int),
    _f("-zse --zoom_save_every", None, argparse.SUPPRESS, type=int),
    _f("-zsc --zoom_scale", None, argparse.SUPPRESS, type=float),
    _f("-zsx --zoom_shift_x", None, argparse.SUPPRESS, type=int),
    _f("-zsy --zoom_shift_y", None, argparse.SUPPRESS, type=int),
    _f("-vsd --video_style_dir", None, "VQGAN-CLIP video style transfer (not supported: see README)"),
    _f("-ifps --input_video_fps", None, argparse.SUPPRESS, type=float),
)


def build_parser(prog: str, description: str, defaults: dict[str, Any]) -> argparse.ArgumentParser:
    """Parser whose every option defaults to SUPPRESS, so only typed flags appear in the result."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for flag in FLAGS:
        kwargs = dict(flag.kwargs)
        dest = flag.names[-1].lstrip("-")
        default = defaults.get(flag.target or dest)
        help_text = flag.help
        if default is not None and help_text is not argparse.SUPPRESS:
            help_text = f"{help_text} (default: {default})"
        parser.add_argument(*flag.names, dest=dest, help=help_text, **kwargs)
    return parser


def _set(data: dict[str, Any], target: str, value: Any) -> None:
    parts = target.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def config_from_args(args: argparse.Namespace, base: Config) -> Config:
    """Overlay typed flags on ``base`` (defaults, possibly updated by --config)."""
    data = base.to_dict()
    given = vars(args)
    for flag in FLAGS:
        dest = flag.names[-1].lstrip("-")
        if flag.target and dest in given:
            value = given[dest]
            if flag.target == "step.augments":
                value = _flatten_augments(value)
            _set(data, flag.target, value)
    return Config.from_dict(data)


def _flatten_augments(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(p for p in str(v).replace(",", " ").split() if p)
    return out


def parse_config(
    argv: Sequence[str] | None, prog: str, description: str, base: Config
) -> tuple[Config, argparse.Namespace]:
    """Parse ``argv`` into a Config: defaults -> ``--config`` file -> typed flags."""
    defaults = _flat_defaults(base)
    parser = build_parser(prog, description, defaults)
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        base = Config.load(Path(args.config))  # a saved config is complete: it replaces the defaults
    if getattr(args, "resume", None):
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise InputError(f"{run_dir}: not a run folder (no config.yaml)")
        base = Config.load(run_dir / "config.yaml")
        base.output.run_dir = str(run_dir)
    config = config_from_args(args, base)
    from metamusic.devices import resolve_device

    if "gpu_id" in args or "cuda_device" in args:
        config.device = str(resolve_device(getattr(args, "gpu_id", None), getattr(args, "cuda_device", None)))
    elif not (getattr(args, "config", None) or getattr(args, "resume", None)):
        config.device = str(resolve_device())
    if getattr(args, "no_sheets", False):
        config.output.sheets = False
    _refuse_unsupported(args)
    return config, args


def _flat_defaults(base: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group, values in base.to_dict().items():
        if isinstance(values, dict):
            for k, v in values.items():
                out[f"{group}.{k}"] = v
        else:
            out[group] = values
    return out


def _refuse_unsupported(args: argparse.Namespace) -> None:
    if getattr(args, "zoom_video", False):
        raise InputError("-zvid: zoom videos are a VQGAN-CLIP feature MetaMusic does not render; drop the flag")
    if getattr(args, "video_style_dir", None):
        raise InputError("-vsd: video style transfer is a VQGAN-CLIP feature MetaMusic does not render; drop the flag")


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """Resume options of a render (not part of its configuration)."""
    options: dict[str, Any] = {"force": getattr(args, "force", False),
                               "from_segment": getattr(args, "from_segment", None)}
    if getattr(args, "ray", None):
        from metamusic.render.ray_executor import RayExecutor

        options["executor"] = RayExecutor(args.ray, cpus_per_task=getattr(args, "ray_cpus_per_task", None) or 1,
                                          max_workers=getattr(args, "ray_workers", None))
    return options


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and turn user-facing errors into one line on stderr and an exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return main(argv)
    except MetaMusicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def generate_main(argv: Sequence[str] | None = None) -> int:
    """``generate.py``: beat-segmented Music2Video render (m2v or fused mode)."""

    def main(argv: Sequence[str] | None) -> int:
        from metamusic import render

        base = Config()
        config, args = parse_config(argv, "generate.py", "Turn a song (and its lyrics) into a VQGAN-CLIP music video.", base)
        render.generate(config, **_run_options(args))
        return 0

    return run_cli(main, argv)


def interpolate_main(argv: Sequence[str] | None = None) -> int:
    """``generate_interpolate.py``: lyric-interval render (text half, audio half)."""

    def main(argv: Sequence[str] | None) -> int:
        from metamusic import render

        base = Config()
        base.music.ips = 100.0
        base.music.mode = "interpolate"
        config, args = parse_config(
            argv, "generate_interpolate.py",
            "Lyric-interval music video: each lyric interval morphs from its text to its audio.", base,
        )
        config.music.mode = "interpolate"
        render.generate(config, **_run_options(args))
        return 0

    return run_cli(main, argv)


def combine_main(argv: Sequence[str] | None = None) -> int:
    """``combine_mp4.py``: concatenate a run folder's segments and mux the song."""
    from metamusic.media import combine

    return run_cli(combine.main, argv)
