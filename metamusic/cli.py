"""Command-line front ends: flags -> one :class:`~metamusic.config.Config` -> the library.

Every flag maps to one field of the configuration (``FLAGS``). The layering is: built-in
defaults, then ``--config FILE`` (YAML, e.g. a run folder's saved ``config.yaml``), then the
flags actually typed. Flags keep the names users know from Music2Video and VQGAN-CLIP.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from metamusic.config import Config
from metamusic.console import run_cli
from metamusic.errors import InputError
from metamusic.helpformat import make_parser

log = logging.getLogger("metamusic")


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    target: str | None  # "group.field" in Config, "seed"/"device"/..., or None (CLI-only)
    help: str
    kwargs: dict[str, Any]
    group: str = ""  # the --help section it is listed in
    only: str | None = None  # "generate": not offered by generate_interpolate.py (which ignores it)


def _f(names: str, target: str | None, help: str, only: str | None = None, **kwargs: Any) -> Flag:
    return Flag(tuple(names.split()), target, help, kwargs, only=only)


def _group(title: str, *flags: Flag) -> tuple[Flag, ...]:
    return tuple(dataclasses.replace(f, group=title) for f in flags)


def _size(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {value}")
    return n


def _every(value: str) -> int | str:
    """--keyframe_every's value: a whole number as an int, anything else as typed (validate.py judges it)."""
    text = value.strip()
    return int(text) if text.lstrip("+-").isdigit() else text


# Flags of generate.py and generate_interpolate.py, by --help section; (names, config target, help, argparse kwargs).
FLAGS: tuple[Flag, ...] = (
    *_group(
        "input",
        _f("-ap --audio_prompt", "music.audio", "the song (wav, mp3, flac, ogg, m4a, ...)"),
        _f("-lyr --lyrics", "music.lyrics", "timed lyric file (M2V CSV, plain MM:SS, screen-play CSV, LRC, SRT)"),
        _f("--lyrics_format", "music.lyrics_format", "force the lyric format (default: detected from the file)",
           choices=["m2v-csv", "plain", "screenplay-csv", "lrc", "srt"]),
        _f("--align", "music.align", "-lyr is plain text (one lyric line per line): time it to the song with Whisper "
           "first; the timed file is written into the run folder", action="store_true"),
        _f("--transcribe", "music.transcribe", "no -lyr: transcribe the lyrics from the song with Whisper first",
           action="store_true"),
        _f("--whisper_model", "music.whisper_model",
           "Whisper checkpoint for --align/--transcribe: a file, or small/base/medium in --checkpoints_dir"),
        _f("--whisper_language", "music.whisper_language", "language of the lyrics for Whisper, e.g. en (default: detected)"),
        _f("-ips --iterations_per_second", "music.ips",
           "optimisation steps per second of music; 0: 10 + 110 x the song's peak volume", type=float),
        _f("-sf --audio_sampling_freq", "music.sample_rate", "rate the song is analysed at (Hz)", type=int),
        _f("--mode", "music.mode", "m2v: each segment follows its lyric OR its audio (the original); "
           "fused: weighted sum of the active lyric and the segment's audio", only="generate",
           choices=["m2v", "fused"]),
        _f("--text_weight", "music.text_weight", "fused mode: weight of the lyric's text prompt", only="generate",
           type=float),
        _f("--audio_weight", "music.audio_weight", "fused mode: weight of the audio prompt", only="generate",
           type=float),
        _f("--faithful_steps", "music.faithful_steps",
           "int(d x rate) + 1 steps per segment, as Music2Video's loop (default: round(d x rate), at least 1)",
           action="store_true"),
        _f("-vl --video_length", "music.video_length",
           "interpolate mode without lyrics: window length in seconds", type=float),
    ),
    *_group(
        "prompts",
        _f("-p --prompts", "prompts.prompts", "text prompts 'text:weight:stop', '|' separates, '^' story phrases"),
        _f("-ip --image_prompts", "prompts.image_prompts", "image prompts, '|' separated",
           type=lambda s: [p for p in s.split("|") if p]),
        _f("-nps --noise_prompt_seeds", "prompts.noise_prompt_seeds", "noise prompt seeds", type=int, nargs="*"),
        _f("-npw --noise_prompt_weights", "prompts.noise_prompt_weights", "noise prompt weights, one per seed",
           type=float, nargs="*"),
        _f("--theme", "prompts.theme", "style appended to every lyric prompt, e.g. 'oil painting, by Monet'"),
        _f("--prompt_prefix", "prompts.prompt_prefix", "text put before every lyric prompt, e.g. 'a scene of'"),
        _f("-ii --init_image", "prompts.init_image", "start from this image"),
        _f("-in --init_noise", "prompts.init_noise", "start from noise", choices=["pixels", "gradient"]),
        _f("-cpe --change_prompt_every", "prompts.change_prompt_every",
           "move to the next '^' story phrase every N steps (0: never)", type=int),
        _f("-i --iterations", "prompts.iterations", "steps of a run without a song", type=int),
    ),
    *_group(
        "optimisation",
        _f("-iw --init_weight", "step.init_weight", "keep the latent near its start", type=float),
        _f("--init_weight_target", "step.init_weight_target",
           "zero: -iw pulls toward 0, fading as 1/(2i+1) with the step i in the segment (VQGAN-CLIP); "
           "start: a constant pull toward the starting latent", choices=["zero", "start"]),
        _f("-lr --learning_rate", "step.lr", "learning rate", type=float),
        _f("-cutm --cut_method", "step.cut_method", "cut-out method",
           choices=["original", "updated", "nrupdated", "updatedpooling", "latest"]),
        _f("-cuts --num_cuts", "step.cutn", "cut-outs per step", type=int),
        _f("-cutp --cut_power", "step.cut_pow", "cut-out size power", type=float),
        _f("-opt --optimiser", "step.optimiser", "optimiser",
           choices=["Adam", "AdamW", "Adagrad", "Adamax", "DiffGrad", "AdamP", "RAdam", "RMSprop"]),
        _f("-aug --augments", "step.augments", "augment codes: Ji Sh Gn Pe Ro Af Et Ts Cr Er Re", nargs="+",
           action="extend"),
        _f("--precision", "step.precision", "fp32 (exact) or mixed precision for decoder and CLIP; auto: bf16 "
           "where fast, else fp16 on GPUs, fp32 on CPU", choices=["fp32", "bf16", "fp16", "auto"]),
        _f("--compile", "step.compile", "torch.compile the decoder and CLIP (slow first step)", action="store_true"),
        _f("--low_memory", "step.low_memory", "gradient checkpointing of the decoder (for 512x512 on 8-11 GB)",
           action="store_true"),
        _f("-sd --seed", "seed", "random seed (reproduces a run bit-for-bit on CPU; default: a new one, printed)",
           type=int),
        _f("-d --deterministic", "deterministic", "use deterministic algorithms", action="store_true"),
    ),
    *_group(
        "keyframes",
        _f("--keyframes", "keyframes.enabled",
           "optimise one keyframe per segment and interpolate the frames between", action="store_true"),
        _f("--keyframe_steps", "keyframes.steps", "optimisation steps per keyframe (default: 20 warm-started, 50 with --independent_keyframes)", type=int),
        _f("--independent_keyframes", "keyframes.independent",
           "start every keyframe from a fresh latent instead of the previous keyframe", action="store_true"),
        _f("--batch_keyframes", "keyframes.batch", "independent keyframes optimised together in one batch", type=int),
        _f("--interpolation", "keyframes.interpolation", "how frames between keyframes are made",
           choices=["slerp", "lerp"]),
        _f("--keyframe_every", "keyframes.every", "one keyframe every N segments (beats in generate.py), or line: "
           "one per lyric line; the frames between move in a pulse on every beat", type=_every, metavar="N|line"),
    ),
    *_group(
        "video and captions",
        _f("-o --output", "output.output", "output video (X.mp4; X.png writes X.mp4 beside it)"),
        _f("-s --size", "output.size", "image size W H (default: 512 512 on GPUs with >= 15 GB, 384 384 with "
           ">= 8 GB, else 256 256)", type=_size, nargs=2, metavar=("W", "H")),
        _f("--fps", "output.fps", "frame rate of the video", type=float),
        _f("-ofps --output_video_fps", "output.output_video_fps",
           "> 9: motion-interpolate the final video to this frame rate (0: off)", type=float),
        _f("--crf", "output.crf", "x264 quality 0..51 (lower is better)", type=int),
        _f("-se --save_every", "output.save_every", "log (and with --save_png, save a PNG) every N steps", type=int),
        _f("--save_png", "output.save_png", "write the current frame as PNG at each --save_every",
           action="store_true"),
        _f("--captions", "output.captions", "burn: draw the active lyric on the frames; srt: write X.srt, X.vtt "
           "and a soft subtitle track; both", choices=["none", "burn", "srt", "both"]),
        _f("--caption_font", "output.caption_font",
           "font file for burned captions, covering the lyrics' script (default: DejaVu Sans)"),
        _f("--caption_size", "output.caption_size", "caption height as a fraction of the frame height", type=float),
        _f("--caption_position", "output.caption_position", "where burned captions go",
           choices=["bottom", "top", "center"]),
        _f("--preview", "output.preview",
           "fast low-resolution render of the whole song to check timing and prompts", action="store_true"),
        _f("--preview_steps", "output.preview_steps", "steps per segment in a preview", type=int),
        _f("--no_sheets", None, "do not write the storyboard contact sheet and timeline PNGs", action="store_true"),
        _f("--keep_states", "output.keep_states", "frame mode: which per-segment states to keep: all (default: any "
           "--from_segment K works), last (resume only), every:N (--from_segment at multiples of N)"),
        _f("-vid --video", None, "make a video (always on with a song; kept for compatibility)", action="store_true"),
    ),
    *_group(
        "run folder",
        _f("--run_dir", "output.run_dir", "run folder (default: beside the output, X.run)"),
        _f("--config", None, "YAML file setting any of these options (flags override it)"),
        _f("--resume", None, "continue the render in this run folder (re-running the same command does too)"),
        _f("--force", None, "start the run folder over even though its settings differ", action="store_true"),
        _f("--from_segment", None, "re-render from segment K on (after editing storyboard.yaml)", type=int),
    ),
    *_group(
        "many GPUs and machines (Ray; not part of the configuration: a resume may use other workers)",
        _f("--ray", None, "run the tasks on a Ray cluster: auto (the one Ray finds), local (a private one here), "
           "host:port or ray://host:port"),
        _f("--ray_cpus_per_task", None, "on CPU: CPUs (and torch threads) of each Ray worker", type=int),
        _f("--ray_workers", None, "at most this many Ray workers for this render (default: every GPU or CPU slot)",
           type=int),
    ),
    *_group(
        "models and device",
        _f("-conf --vqgan_config", "models.vqgan_config", "VQGAN yaml config"),
        _f("-ckpt --vqgan_checkpoint", "models.vqgan_checkpoint", "VQGAN checkpoint (.ckpt)"),
        _f("-m --clip_model", "models.clip_model", "CLIP name (ViT-B/32, ViT-B/16, RN50) or a file"),
        _f("--wav2clip_checkpoint", "models.wav2clip_checkpoint", "Wav2CLIP.pt"),
        _f("--checkpoints_dir", "models.checkpoints_dir", "folder where CLIP names are looked up"),
        _f("--trust_torchscript", "models.trust_torchscript",
           "load a CLIP TorchScript archive whose SHA-256 is not a published one (never taken from --config "
           "or --resume: type it each time)", action="store_true"),
        _f("-gid --gpu_id", None, "GPU index to use, or 'cpu' (default: GPU 0 if there is one)"),
        _f("-cd --cuda_device", None, "device name (cuda:0, mps, cpu)"),
    ),
    *_group(
        "VQGAN-CLIP flags MetaMusic refuses (see README)",
        _f("-zvid --zoom_video", None, "VQGAN-CLIP zoom video", action="store_true"),
        _f("-zs --zoom_start", None, argparse.SUPPRESS, type=int),
        _f("-zse --zoom_save_every", None, argparse.SUPPRESS, type=int),
        _f("-zsc --zoom_scale", None, argparse.SUPPRESS, type=float),
        _f("-zsx --zoom_shift_x", None, argparse.SUPPRESS, type=int),
        _f("-zsy --zoom_shift_y", None, argparse.SUPPRESS, type=int),
        _f("-vsd --video_style_dir", None, "VQGAN-CLIP video style transfer"),
        _f("-ifps --input_video_fps", None, argparse.SUPPRESS, type=float),
    ),
)


def build_parser(prog: str, description: str, defaults: dict[str, Any], *, command: str = "generate",
                 examples: Sequence[str] = ()) -> argparse.ArgumentParser:
    """Parser whose every option defaults to SUPPRESS, so only typed flags appear in the result.

    Flags are listed in their ``Flag.group`` sections; a value flag's help ends with its default
    (once; switches and flags whose help already says it get none). ``command`` drops the flags
    another command does not use (``Flag.only``).
    """
    parser = make_parser(prog, description, examples, usage="-ap SONG [-lyr LYRICS] [options]  (or: -p PROMPTS [options])",
                         argument_default=argparse.SUPPRESS)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in FLAGS:
        if flag.only is not None and flag.only != command:
            continue
        if flag.group not in groups:
            groups[flag.group] = parser.add_argument_group(flag.group)
        kwargs = dict(flag.kwargs)
        dest = flag.names[-1].lstrip("-")
        default = defaults.get(flag.target or dest)
        help_text = flag.help
        switch = kwargs.get("action") == "store_true"
        if (default not in (None, "", []) and not switch and help_text is not argparse.SUPPRESS
                and "default:" not in help_text):
            help_text = f"{help_text} (default: {_shown(default)})"
        groups[flag.group].add_argument(*flag.names, dest=dest, help=help_text, **kwargs)
    return parser


def _shown(value: Any) -> str:
    """A default as the user would type it: ``30`` not ``30.0``, ``Af Pe`` not ``['Af', 'Pe']``."""
    if isinstance(value, (list, tuple)):
        return " ".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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
    argv: Sequence[str] | None, prog: str, description: str, base: Config, *, command: str = "generate",
    examples: Sequence[str] = (),
) -> tuple[Config, argparse.Namespace]:
    """Parse ``argv`` into a Config: defaults -> ``--config`` file -> typed flags."""
    defaults = _flat_defaults(base)
    parser = build_parser(prog, description, defaults, command=command, examples=examples)
    args = parser.parse_args(argv)
    _refuse_unsupported(args)
    if getattr(args, "config", None):
        # A saved config is complete: it replaces the defaults.
        base = Config.load(Path(args.config), aliases=config_aliases())
    if getattr(args, "resume", None):
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise InputError(f"{run_dir}: not a run folder (no config.yaml)")
        base = Config.load(run_dir / "config.yaml")
        base.output.run_dir = str(run_dir)
    config = config_from_args(args, base)
    # Loading an unverified TorchScript archive runs its code: only a flag typed now allows it.
    config.models.trust_torchscript = bool(getattr(args, "trust_torchscript", False))
    from metamusic.devices import resolve_device

    if "gpu_id" in args or "cuda_device" in args:
        config.device = str(resolve_device(getattr(args, "gpu_id", None), getattr(args, "cuda_device", None)))
    elif not (getattr(args, "config", None) or getattr(args, "resume", None)):
        config.device = str(resolve_device())
    if getattr(args, "no_sheets", False):
        config.output.sheets = False
    return config, args


def config_aliases() -> dict[str, str]:
    """The flags' long names a --config file may use (``num_cuts: 8``) -> their ``group.field``."""
    return {f.names[-1].lstrip("-"): f.target for f in FLAGS if f.target is not None}


def _flat_defaults(base: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group, values in base.to_dict().items():
        if isinstance(values, dict):
            for k, v in values.items():
                out[f"{group}.{k}"] = v
        else:
            out[group] = values
    return out


_REFUSED = {  # dest -> (flag, what it does in VQGAN-CLIP)
    "zoom_video": ("-zvid", "zoom videos"),
    "zoom_start": ("-zs", "zoom videos"),
    "zoom_save_every": ("-zse", "zoom videos"),
    "zoom_scale": ("-zsc", "zoom videos"),
    "zoom_shift_x": ("-zsx", "zoom videos"),
    "zoom_shift_y": ("-zsy", "zoom videos"),
    "video_style_dir": ("-vsd", "video style transfer"),
    "input_video_fps": ("-ifps", "video style transfer"),
}


def _refuse_unsupported(args: argparse.Namespace) -> None:
    for dest, (flag, what) in _REFUSED.items():
        if getattr(args, dest, None) not in (None, False):
            raise InputError(f"{flag}: {what}, a VQGAN-CLIP feature MetaMusic does not render; drop the flag")


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """Resume options of a render (not part of its configuration)."""
    options: dict[str, Any] = {"force": getattr(args, "force", False),
                               "from_segment": getattr(args, "from_segment", None)}
    if getattr(args, "ray", None):
        from metamusic.render.ray_executor import RayExecutor

        options["executor"] = RayExecutor(args.ray, cpus_per_task=getattr(args, "ray_cpus_per_task", None) or 1,
                                          max_workers=getattr(args, "ray_workers", None))
    return options


GENERATE_EXAMPLES = (
    "{prog} -ap song.mp3 -lyr lyrics/song.csv -o outputs/song.mp4",
    "{prog} -ap song.mp3 -lyr lyrics/song.srt --preview -o outputs/song.mp4   # check timing first",
    "{prog} -ap song.mp3 -lyr lyrics/song.lrc --mode fused --captions both --theme 'oil painting'",
    "{prog} -p 'a lighthouse at dusk' -i 300 -o outputs/lighthouse.png   # no song",
    "{prog} --resume outputs/song.run   # continue an interrupted render",
)
INTERPOLATE_EXAMPLES = (
    "{prog} -ap song.mp3 -lyr lyrics/song.csv -o outputs/song.mp4",
    "{prog} -ap song.mp3 -vl 8 -o outputs/song.mp4   # no lyrics: 8-second windows",
)


def generate_main(argv: Sequence[str] | None = None) -> int:
    """``generate.py``: beat-segmented Music2Video render (m2v or fused mode)."""

    def main(argv: Sequence[str] | None) -> int:
        from metamusic import render

        base = Config()
        config, args = parse_config(argv, "generate.py", "Turn a song (and its lyrics) into a VQGAN-CLIP music video.",
                                    base, command="generate", examples=GENERATE_EXAMPLES)
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
            command="interpolate", examples=INTERPOLATE_EXAMPLES,
        )
        config.music.mode = "interpolate"
        render.generate(config, **_run_options(args))
        return 0

    return run_cli(main, argv)


def combine_main(argv: Sequence[str] | None = None) -> int:
    """``combine_mp4.py``: concatenate a run folder's segments and mux the song."""
    from metamusic.media import combine

    return run_cli(combine.main, argv)
