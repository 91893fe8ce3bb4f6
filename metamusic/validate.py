"""Every setting of a :class:`~metamusic.config.Config` checked at once, before anything loads or is written.

:func:`validate` is a pure function of the configuration: it reads no file and loads no model.
A bad value raises :class:`~metamusic.errors.InputError` with one line naming the flag and the
values it accepts, so a typo costs a second, not a render (files are checked afterwards by
``metamusic.render.check_inputs``).
"""

from __future__ import annotations

import math
from typing import Any

from metamusic.config import Config
from metamusic.errors import InputError

MODES = ("m2v", "fused", "interpolate")
CAPTIONS = ("none", "burn", "srt", "both")
CAPTION_POSITIONS = ("bottom", "top", "center")
INIT_NOISE = ("pixels", "gradient")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def validate(config: Config) -> None:
    """Raise InputError (one line: flag, bad value, accepted values) for the first bad setting."""
    from metamusic.optim.augments import AUGMENT_CODES
    from metamusic.optim.cutouts import CUT_METHODS
    from metamusic.optim.interpolate import INTERPOLATIONS
    from metamusic.optim.optimisers import OPTIMISERS
    from metamusic.song.lyrics import FORMATS

    m, s, p, o, k = config.music, config.step, config.prompts, config.output, config.keyframes
    _choice("--mode", m.mode, MODES)
    if m.lyrics_format is not None:
        _choice("--lyrics_format", m.lyrics_format, FORMATS)
    _number("-ips", m.ips, "a number of steps per second >= 0 (0: scaled by volume)", lo=0.0)
    _integer("-sf", m.sample_rate, "a sample rate in Hz >= 8000", lo=8000)
    _number("--text_weight", m.text_weight, "a weight >= 0", lo=0.0)
    _number("--audio_weight", m.audio_weight, "a weight >= 0", lo=0.0)
    _number("-vl", m.video_length, "a window length in seconds > 0", lo=0.0, open_lo=True)

    _choice("-cutm", s.cut_method, CUT_METHODS)
    _integer("-cuts", s.cutn, "a number of cut-outs >= 1", lo=1)
    _number("-cutp", s.cut_pow, "a power > 0, e.g. 1.0", lo=0.0, open_lo=True)
    _number("-lr", s.lr, "a learning rate > 0, e.g. 0.1", lo=0.0, open_lo=True)
    _number("-iw", s.init_weight, "a weight >= 0", lo=0.0)
    _choice("-opt", s.optimiser, OPTIMISERS)
    _choice("--precision", s.precision, PRECISIONS)
    bad = [a for a in s.augments if a not in AUGMENT_CODES]
    if bad:
        raise InputError(f"-aug {' '.join(map(str, bad))}: unknown augment code; choose from {' '.join(AUGMENT_CODES)}")

    if len(p.noise_prompt_seeds) != len(p.noise_prompt_weights):
        raise InputError(f"-nps/-npw: {len(p.noise_prompt_seeds)} noise prompt seed(s) but "
                         f"{len(p.noise_prompt_weights)} weight(s); give one -npw weight per -nps seed")
    if p.init_noise is not None:
        _choice("-in", p.init_noise, INIT_NOISE)
    _integer("-cpe", p.change_prompt_every, "a number of steps >= 0 (0: never)", lo=0)
    _integer("-i", p.iterations, "a number of steps >= 1", lo=1)

    _number("--fps", o.fps, "a frame rate > 0, e.g. 30", lo=0.0, open_lo=True)
    if o.output_video_fps != 0:
        _number("-ofps", o.output_video_fps, "0 (off) or a frame rate > 9, e.g. 60", lo=9.0, open_lo=True)
    _integer("--crf", o.crf, "an x264 quality 0..51 (lower is better, 17 is near lossless)", lo=0, hi=51)
    _integer("-se", o.save_every, "a number of steps >= 1", lo=1)
    if o.size is not None and (len(o.size) != 2 or any(not _is_int(v) or v <= 0 for v in o.size)):
        raise InputError(f"-s {' '.join(map(str, o.size))}: expected two positive integers W H")
    _choice("--captions", o.captions, CAPTIONS)
    _number("--caption_size", o.caption_size, "a fraction of the frame height in (0, 1], e.g. 0.06",
            lo=0.0, hi=1.0, open_lo=True)
    _choice("--caption_position", o.caption_position, CAPTION_POSITIONS)
    _integer("--preview_steps", o.preview_steps, "a number of steps >= 1", lo=1)

    if k.steps is not None:
        _integer("--keyframe_steps", k.steps, "a number of steps >= 1", lo=1)
    _integer("--batch_keyframes", k.batch, "a number of keyframes >= 1", lo=1)
    _choice("--interpolation", k.interpolation, INTERPOLATIONS)
    _keyframe_every(config)
    if config.seed is not None:
        _integer("-sd", config.seed, "an integer 0..2**63-1", lo=0, hi=2**63 - 1)


def _keyframe_every(config: Config) -> None:
    """--keyframe_every: a whole number of segments >= 1, or ``line`` with lyrics; keyframe mode only."""
    every, music = config.keyframes.every, config.music
    if every == "line":
        if not (music.lyrics or music.transcribe):
            raise InputError("--keyframe_every line: one keyframe per lyric line needs lyrics; add -lyr LYRICS "
                             "(or --transcribe), or give a number of beats, e.g. --keyframe_every 4")
    elif not _is_int(every) or every < 1:
        raise InputError(f"--keyframe_every {every}: expected a whole number of segments (beats) >= 1, or line")
    if every != 1 and not config.keyframes.enabled:
        raise InputError(f"--keyframe_every {every}: spaces the keyframes of keyframe mode; add --keyframes")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(flag: str, value: Any, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise InputError(f"{flag} {value}: expected one of {', '.join(accepted)}")


def _integer(flag: str, value: Any, accepted: str, *, lo: int | None = None, hi: int | None = None) -> None:
    if not _is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(f"{flag} {value}: expected {accepted}")


def _number(flag: str, value: Any, accepted: str, *, lo: float | None = None, hi: float | None = None,
            open_lo: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if open_lo else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        raise InputError(f"{flag} {value}: expected {accepted}")
