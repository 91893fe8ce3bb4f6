"""The one typed configuration of a render, built once by the command line and passed down.

It is saved as ``config.yaml`` in the run folder, so a run can be reproduced (``--config``) or
resumed from it. Groups mirror the layout of the package: models, music input, the
optimisation step (:class:`metamusic.optim.stepper.StepConfig` itself), video output.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metamusic.errors import InputError
from metamusic.optim.stepper import StepConfig

DEFAULT_CHECKPOINTS = Path("checkpoints")
DEFAULT_VQGAN = "vqgan_imagenet_f16_16384"


@dataclass
class ModelConfig:
    """Which model files to load (paths relative to the working directory)."""

    vqgan_config: str = str(DEFAULT_CHECKPOINTS / f"{DEFAULT_VQGAN}.yaml")
    vqgan_checkpoint: str = str(DEFAULT_CHECKPOINTS / f"{DEFAULT_VQGAN}.ckpt")
    clip_model: str = "ViT-B/32"  # an OpenAI name (looked up in checkpoints_dir) or a file
    wav2clip_checkpoint: str = str(DEFAULT_CHECKPOINTS / "Wav2CLIP.pt")
    checkpoints_dir: str = str(DEFAULT_CHECKPOINTS)
    trust_torchscript: bool = False


@dataclass
class MusicConfig:
    """The song, its lyrics and how the song is cut into segments."""

    audio: str | None = None
    lyrics: str | None = None
    lyrics_format: str | None = None  # None: detected from the file's content
    align: bool = False  # lyrics is plain text: time its lines to the song with Whisper first
    transcribe: bool = False  # no lyrics given: transcribe them from the song with Whisper first
    whisper_model: str = str(DEFAULT_CHECKPOINTS / "whisper_small.pt")  # a file, or small/base/medium
    whisper_language: str | None = None  # None: Whisper detects it
    sample_rate: int = 16000
    ips: float = 0.0  # optimisation steps per second of music; 0: volume-scaled (generate.py)
    mode: str = "m2v"  # "m2v" (faithful either/or), "fused" (text + audio), "interpolate"
    text_weight: float = 1.0
    audio_weight: float = 1.0
    video_length: float = 10.0  # interpolate mode without lyrics: window length in seconds
    faithful_steps: bool = False  # int(d * rate) + 1 steps per segment as Music2Video, not round(d * rate)


@dataclass
class PromptConfig:
    """Prompts that apply to the whole render (VQGAN-CLIP flags)."""

    prompts: str | None = None  # "text:weight:stop|other" with "^" story phrases
    image_prompts: list[str] = field(default_factory=list)
    noise_prompt_seeds: list[int] = field(default_factory=list)
    noise_prompt_weights: list[float] = field(default_factory=list)
    init_image: str | None = None
    init_noise: str | None = None  # "pixels" | "gradient"
    change_prompt_every: int = 0
    iterations: int = 500  # steps of a plain (no audio) run
    theme: str | None = None  # appended to every lyric prompt ("oil painting, by ...")
    prompt_prefix: str | None = None  # put before every lyric prompt ("a scene of")


@dataclass
class OutputConfig:
    """Where and how frames and videos are written."""

    output: str = "outputs/output.mp4"
    run_dir: str | None = None  # default: beside the output, "<stem>.run"
    size: tuple[int, int] | None = None  # (W, H); None: chosen for the device
    fps: float = 30.0
    output_video_fps: float = 0.0  # > 9: motion-interpolate the final video to this rate
    crf: int = 17
    save_every: int = 50
    save_png: bool = False
    captions: str = "none"  # "none" | "burn" | "srt" | "both"
    caption_font: str | None = None  # a .ttf/.otf covering the lyrics' script (default DejaVu Sans)
    caption_size: float = 0.06  # font height as a fraction of the frame height
    caption_position: str = "bottom"  # "bottom" | "top" | "center"
    preview: bool = False  # fast low-resolution render of the whole timeline
    preview_steps: int = 3  # steps per segment in a preview
    sheets: bool = True  # storyboard contact sheet and timeline PNGs in the run folder
    keep_states: str = "all"  # frame mode: "all" (any --from_segment), "last", or "every:N"


@dataclass
class KeyframeConfig:
    """Keyframe mode: one optimised latent per segment (or per ``every`` segments), frames interpolated between them."""

    enabled: bool = False
    steps: int | None = None  # optimisation steps per keyframe; None: per_keyframe_steps()'s default
    independent: bool = False  # each keyframe from a fresh latent instead of the previous keyframe
    batch: int = 1  # independent keyframes optimised together in one batch
    interpolation: str = "slerp"  # "slerp" | "lerp"
    every: int | str = 1  # one keyframe per N segments (beats in generate.py), or "line": one per lyric line

    def per_keyframe_steps(self) -> int:
        """``steps``, else the default: 20 for warm-started keyframes, 50 for independent ones.

        A warm-started keyframe goes on optimising the previous keyframe's latent, as frame mode goes
        on from the previous frame (about 4 steps per frame at the paper's 110 steps per second and
        30 fps), so 20 steps move it to its new targets; an independent keyframe starts from noise.
        """
        if self.steps is not None:
            return int(self.steps)
        return 50 if self.independent else 20


@dataclass
class Config:
    """Everything that determines a render."""

    models: ModelConfig = field(default_factory=ModelConfig)
    music: MusicConfig = field(default_factory=MusicConfig)
    step: StepConfig = field(default_factory=StepConfig)  # frozen: change it with dataclasses.replace
    prompts: PromptConfig = field(default_factory=PromptConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    seed: int | None = None
    device: str = "cpu"
    deterministic: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["output"]["size"] is not None:
            d["output"]["size"] = list(d["output"]["size"])
        d["step"]["augments"] = list(d["step"]["augments"])  # YAML lists; StepConfig takes them back
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], aliases: dict[str, str] | None = None) -> "Config":
        """Build a Config from a (possibly partial) nested dict; unknown keys and wrong types are errors.

        ``aliases`` maps flat names (the command line's long flag names, e.g. ``num_cuts``) to
        ``"group.field"``; such keys may appear at the top level beside the nested groups.
        """
        data = _nest_aliases(data, aliases or {})
        kwargs: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for key, value in data.items():
            if key not in hints:
                raise InputError(f"config: unknown setting {key!r}{_suggest(key, _valid_names(aliases))}")
            sub = _GROUP_TYPES.get(key)
            if sub is not None:
                if not isinstance(value, dict):
                    raise InputError(f"config: {key!r} must be a mapping of its settings, got {value!r}")
                sub_hints = typing.get_type_hints(sub)
                unknown = sorted(set(value) - set(sub_hints))
                if unknown:
                    name = f"{key}.{unknown[0]}"
                    raise InputError(f"config: unknown setting {name}{_suggest(name, _valid_names(aliases))}")
                value = {k: _typed(f"{key}.{k}", v, sub_hints[k]) for k, v in value.items()}
                kwargs[key] = sub(**value)
            else:
                kwargs[key] = _typed(key, value, hints[key])
        return cls(**kwargs)

    def save(self, path: Path) -> None:
        from metamusic.files import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))

    @classmethod
    def load(cls, path: Path, aliases: dict[str, str] | None = None) -> "Config":
        """Read a YAML config (nested groups and/or ``aliases``' flat names); errors name ``path``."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{path}: cannot read config ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: config must be a YAML mapping")
        try:
            return cls.from_dict(data, aliases)
        except InputError as exc:
            raise InputError(str(exc).replace("config:", f"{path}:", 1)) from None


_GROUP_TYPES = {
    "models": ModelConfig,
    "music": MusicConfig,
    "step": StepConfig,
    "prompts": PromptConfig,
    "output": OutputConfig,
    "keyframes": KeyframeConfig,
}


def _valid_names(aliases: dict[str, str] | None) -> list[str]:
    """Every key a config file may use: groups, ``group.field`` and the flat aliases."""
    names = [f.name for f in dataclasses.fields(Config)]
    for group, sub in _GROUP_TYPES.items():
        names += [f"{group}.{f.name}" for f in dataclasses.fields(sub)]
    return names + sorted(aliases or {})


def _suggest(name: str, valid: list[str]) -> str:
    """``"; did you mean a, b?"``: the valid names whose last part is nearest to ``name``'s (difflib)."""
    leaf = name.rsplit(".", 1)[-1]

    def score(v: str) -> float:
        return difflib.SequenceMatcher(None, leaf, v.rsplit(".", 1)[-1]).ratio()

    close = [v for v in sorted(valid, key=score, reverse=True)[:3] if score(v) >= 0.6]
    return f"; did you mean {', '.join(close)}?" if close else ""


def _nest_aliases(data: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """``{"num_cuts": 8}`` -> ``{"step": {"cutn": 8}}`` for flat alias keys; nested groups kept."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        target = aliases.get(key) if key not in _GROUP_TYPES else None
        if target is None:
            if isinstance(value, dict) and isinstance(out.get(key), dict):  # the group, after a long name
                _no_clash(out[key], value, key, aliases)
                out[key] = {**value, **out[key]}
            else:
                out[key] = value
            continue
        parts = target.split(".")
        if len(parts) == 1:
            out[parts[0]] = value
            continue
        group = out.setdefault(parts[0], {})
        if not isinstance(group, dict):
            raise InputError(f"config: {parts[0]!r} must be a mapping of its settings, got {group!r}")
        _no_clash(group, {parts[1]: value}, parts[0], aliases)
        group[parts[1]] = value
    return out


def _no_clash(a: dict[str, Any], b: dict[str, Any], group: str, aliases: dict[str, str]) -> None:
    """InputError when a long name and its nested setting (``num_cuts`` and ``step.cutn``) are both given."""
    for name in set(a) & set(b):
        longs = [k for k, t in aliases.items() if t == f"{group}.{name}"]
        raise InputError(f"config: {' / '.join(longs)} and {group}.{name} set the same thing: keep one")


_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _typed(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the dataclass annotation ``hint`` (ints accepted as floats,
    lists as tuples); InputError naming the setting and the expected kind otherwise."""
    ok, converted = _convert(value, hint)
    if not ok:
        raise InputError(f"config: {name} must be {_describe(hint)}, got {value!r} ({type(value).__name__})")
    return converted


def _convert(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            ok, v = _convert(value, arm)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        variadic = origin is list or (len(args) == 2 and args[1] is Ellipsis)  # list[T] or tuple[T, ...]
        if not variadic and len(args) != len(value):
            return False, value
        arms = args[:1] * len(value) if variadic else args
        out = []
        for item, arm in zip(value, arms):
            ok, v = _convert(item, arm)
            if not ok:
                return False, value
            out.append(v)
        return True, origin(out)
    return True, value


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    args = typing.get_args(hint)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is tuple:
        return f"a list of {len(typing.get_args(hint))} {_describe(typing.get_args(hint)[0]).removeprefix('an ')}s"
    return _KIND.get(hint, str(hint))
