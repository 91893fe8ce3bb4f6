#!/usr/bin/env python
"""Reproduce the paper's comparison on one song: render every configuration, score each, tabulate.

    python experiments/run.py -ap song.mp3 -lyr lyrics/song.csv -o experiments/out/song -gid 0

Configurations (Music2Video, arXiv 2201.03809, and this project's additions), all with the same
seed and the same optimisation budget (``--budget-ips`` steps per second of music):

- ``text_only``   generate.py --mode fused --text_weight 1 --audio_weight 0 (lyrics' CLIP text only)
- ``audio_only``  generate.py without lyrics (Wav2CLIP audio only, the paper's audio command)
- ``m2v``         generate.py --mode m2v (the original code: a segment follows its lyric OR its audio)
- ``fused``       generate.py --mode fused, weights 1 / 1 (what the paper describes)
- ``interpolate`` generate_interpolate.py (lyric intervals: text half, then audio half)
- ``keyframes``   generate.py --keyframes with keyframe_steps = round(m2v total steps / segments),
                  so its total step budget matches the m2v run

Named steps of :func:`main`:

1. ``check_inputs``: flags, song, lyrics, model files and sizes validated, the m2v timeline
   planned in-process (for the keyframe budget); nothing is rendered before this passes.
2. ``build_experiments``: one argument list per configuration (sys.executable + script path).
3. ``render_all``: every configuration in its own subprocess -> OUTDIR/NAME/video.mp4 (and its
   run folder video.run/, and render.log with the render's output).
4. ``evaluate_all``: CLIP and Wav2CLIP loaded once; every video scored with metamusic.evaluate
   against the same lyric-interval segments (so the numbers are comparable across
   configurations); each configuration's metrics.csv / summary.json / plot.png go to
   OUTDIR/NAME/evaluation/.
5. ``write_results``: OUTDIR/results.md (markdown table), results.csv, comparison.png.

Exit status: 0 when every selected configuration rendered and was scored, 1 when any failed
(reported in the table's status column), 2 for bad input (one line, before anything is rendered).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import math
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the metamusic package sits beside us
    sys.path.insert(0, str(ROOT))

from metamusic.errors import InputError  # noqa: E402

log = logging.getLogger("metamusic.experiments")

__all__ = [
    "CONFIGURATIONS",
    "Configuration",
    "Experiment",
    "Options",
    "build_experiments",
    "build_parser",
    "check_extra",
    "check_inputs",
    "comparison_figure",
    "evaluate_all",
    "keyframe_budget",
    "main",
    "parse_options",
    "render_all",
    "render_one",
    "steps_run",
    "results_csv",
    "results_markdown",
    "shared_flags",
    "write_results",
]


# ---------------------------------------------------------------------------------------------
# The configurations of the comparison
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    """One row of the comparison: which script renders it and with which mode flags."""

    name: str
    script: str  # file name beside the repository root
    flags: tuple[str, ...]  # mode flags (the shared seed / budget / model flags are added to all)
    uses_lyrics: bool
    description: str


CONFIGURATIONS: tuple[Configuration, ...] = (
    Configuration("text_only", "generate.py", ("--mode", "fused", "--text_weight", "1", "--audio_weight", "0"),
                  True, "lyrics' CLIP text only (fused mode, audio weight 0)"),
    Configuration("audio_only", "generate.py", (), False, "Wav2CLIP audio only (no lyrics)"),
    Configuration("m2v", "generate.py", ("--mode", "m2v"), True,
                  "original either/or: a segment follows its lyric OR its audio"),
    Configuration("fused", "generate.py", ("--mode", "fused", "--text_weight", "1", "--audio_weight", "1"),
                  True, "text + audio, weights 1 / 1"),
    Configuration("interpolate", "generate_interpolate.py", (), True,
                  "lyric intervals: first half text, second half audio"),
    Configuration("keyframes", "generate.py", ("--keyframes",), True,
                  "one keyframe per m2v segment, frames interpolated; same total steps as m2v"),
)
NAMES = tuple(c.name for c in CONFIGURATIONS)

# Fields of the render configuration the runner sets itself: --extra may not change them.
PROTECTED = (
    "music.audio", "music.lyrics", "music.ips", "music.mode", "music.text_weight", "music.audio_weight",
    "keyframes.enabled", "keyframes.steps", "seed", "device", "output.output", "output.run_dir",
    "output.size", "output.fps", "step.cutn", "models.vqgan_config", "models.vqgan_checkpoint",
    "models.clip_model", "models.wav2clip_checkpoint", "models.checkpoints_dir", "models.trust_torchscript",
)

# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def keyframe_budget(segment_steps: Sequence[int]) -> int:
    """Steps per keyframe giving keyframe mode the m2v run's total budget: round(sum / segments), >= 1."""
    if not segment_steps:
        raise ValueError("no segments: cannot match a step budget")
    return max(1, round(sum(int(s) for s in segment_steps) / len(segment_steps)))


def _last_line(text: str, limit: int = 160) -> str:
    """The last non-empty line of ``text``, shortened to ``limit`` characters."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines else "(no output)"
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def _fmt(x: float | None, digits: int = 4, signed: bool = False) -> str:
    """A number for the markdown table; an en dash for missing values."""
    if x is None or not math.isfinite(x):
        return "\u2013"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _csv_num(x: float | None) -> str:
    """A number for results.csv; empty when missing."""
    return "" if x is None or not math.isfinite(x) else f"{x:.6f}"


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors become one-line InputErrors (exit 2 via run_cli)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The runner's flags (model flags mirror generate.py's names)."""
    p = _Parser(
        prog="experiments/run.py",
        description="Render one song in every configuration of the Music2Video comparison (same seed "
                    "and budget), score each with evaluate.py's metrics, write a table and a plot.",
    )
    p.add_argument("-ap", "--audio_prompt", required=True, help="the song")
    p.add_argument("-lyr", "--lyrics", required=True, help="timed lyric file (any format generate.py reads)")
    p.add_argument("-o", "--output", required=True, help="output folder (one sub-folder per configuration)")
    g = p.add_argument_group("models (passed to every render and used for scoring)")
    g.add_argument("-conf", "--vqgan_config")
    g.add_argument("-ckpt", "--vqgan_checkpoint")
    g.add_argument("-m", "--clip_model")
    g.add_argument("--wav2clip_checkpoint")
    g.add_argument("--checkpoints_dir")
    g.add_argument("--trust_torchscript", action="store_true")
    g.add_argument("-gid", "--gpu_id")
    g.add_argument("-cd", "--cuda_device")
    r = p.add_argument_group("the shared budget")
    r.add_argument("--seed", type=int, default=0, help="seed of every render (default 0)")
    r.add_argument("--budget-ips", dest="budget_ips", type=float, default=10.0,
                   help="optimisation steps per second of music for every configuration (default 10; the "
                        "paper's commands use 100)")
    r.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), help="image size (default: the renderer's)")
    r.add_argument("--fps", type=float, help="video frame rate (default: the renderer's, 30)")
    r.add_argument("--cuts", type=int, help="cut-outs per step (default: the renderer's, 32)")
    x = p.add_argument_group("the run")
    x.add_argument("--only", nargs="+", metavar="NAME", help=f"configurations to run (of {', '.join(NAMES)})")
    x.add_argument("--extra", default="", help="more flags for every render, e.g. \"-cutm original -aug Af Pe\"")
    x.add_argument("--jobs", type=int, default=1,
                   help="renders run at the same time (default 1; more makes wall times incomparable)")
    x.add_argument("--every", type=int, default=1, help="score every Nth video frame (default 1)")
    x.add_argument("--reuse", action="store_true",
                   help="keep a configuration already rendered by the same command (re-score it only)")
    return p


@dataclass
class Options:
    """What the runner's command line asked for (paths absolute)."""

    audio: Path
    lyrics: Path
    outdir: Path
    model_flags: list[str]
    seed: int = 0
    budget_ips: float = 10.0
    size: tuple[int, int] | None = None
    fps: float | None = None
    cuts: int | None = None
    only: tuple[str, ...] = NAMES
    extra: list[str] = field(default_factory=list)
    jobs: int = 1
    every: int = 1
    reuse: bool = False


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """Flags -> Options; cheap checks of values (files are checked in :func:`check_inputs`)."""
    a = build_parser().parse_args(argv)
    only = tuple(a.only) if a.only else NAMES
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        raise InputError(f"--only {' '.join(unknown)}: unknown configuration (choose from {', '.join(NAMES)})")
    only = tuple(n for n in NAMES if n in only)  # the table's order, no duplicates
    if not (a.budget_ips > 0 and math.isfinite(a.budget_ips)):
        raise InputError(f"--budget-ips {a.budget_ips:g}: must be a positive number of steps per second")
    if a.size is not None and min(a.size) <= 0:
        raise InputError(f"--size {a.size[0]} {a.size[1]}: sizes must be positive")
    if a.fps is not None and not (a.fps > 0 and math.isfinite(a.fps)):
        raise InputError(f"--fps {a.fps:g}: must be positive")
    if a.cuts is not None and a.cuts < 1:
        raise InputError(f"--cuts {a.cuts}: must be >= 1")
    if a.jobs < 1 or a.every < 1:
        raise InputError(f"--jobs {a.jobs} / --every {a.every}: must be >= 1")
    try:
        extra = shlex.split(a.extra)  # tokenised only: renders run from argument lists, never a shell
    except ValueError as exc:
        raise InputError(f"--extra {a.extra!r}: cannot split it into flags ({exc})") from None
    model_flags: list[str] = []
    for flag, value in (("-conf", a.vqgan_config), ("-ckpt", a.vqgan_checkpoint), ("-m", a.clip_model),
                        ("--wav2clip_checkpoint", a.wav2clip_checkpoint), ("--checkpoints_dir", a.checkpoints_dir),
                        ("-gid", a.gpu_id), ("-cd", a.cuda_device)):
        if value is not None:
            model_flags += [flag, value]
    if a.trust_torchscript:
        model_flags.append("--trust_torchscript")
    return Options(
        audio=Path(a.audio_prompt).expanduser().resolve(), lyrics=Path(a.lyrics).expanduser().resolve(),
        outdir=Path(a.output).expanduser().resolve(), model_flags=model_flags, seed=a.seed,
        budget_ips=a.budget_ips, size=tuple(a.size) if a.size else None, fps=a.fps, cuts=a.cuts, only=only,
        extra=extra, jobs=a.jobs, every=a.every, reuse=a.reuse,
    )


def shared_flags(options: Options) -> list[str]:
    """Flags every render gets: the song, seed, budget, size, fps, cut-outs, models, --extra."""
    flags = ["-ap", str(options.audio), "-sd", str(options.seed), "-ips", f"{options.budget_ips:g}"]
    if options.size:
        flags += ["-s", str(options.size[0]), str(options.size[1])]
    if options.fps:
        flags += ["--fps", f"{options.fps:g}"]
    if options.cuts:
        flags += ["-cuts", str(options.cuts)]
    return flags + list(options.model_flags) + list(options.extra)


# ---------------------------------------------------------------------------------------------
# 1. inputs
# ---------------------------------------------------------------------------------------------


@dataclass
class Checked:
    """Validated inputs: the render configuration of m2v, the decoded song and lyrics, the m2v plan."""

    config: Any  # metamusic.config.Config of the m2v render (models, device)
    audio: Any  # metamusic.song.audio.Audio
    lyrics: Any  # metamusic.song.lyrics.Lyrics
    m2v_steps: list[int]  # steps of each m2v segment
    keyframe_steps: int


def _parse_render_flags(argv: list[str]) -> Any:
    """generate.py's own flag parsing, in-process; its usage errors become one-line InputErrors."""
    from metamusic.cli import parse_config
    from metamusic.config import Config

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            config, _ = parse_config(argv, "generate.py", "", Config())
    except SystemExit:
        reason = _last_line(err.getvalue())
        raise InputError(f"generate.py refuses the render flags ({reason}): check --extra") from None
    return config


def _dotted(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict flattened to {"group.field": value}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_dotted(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_extra(options: Options) -> None:
    """Refuse --extra flags that would change what the runner holds equal (seed, budget, models, ...)."""
    if not options.extra:
        return
    base = ["-ap", str(options.audio)]
    plain = _dotted(_parse_render_flags(base).to_dict())
    extra = _dotted(_parse_render_flags(list(options.extra) + base).to_dict())
    changed = [k for k in PROTECTED if plain.get(k) != extra.get(k)]
    if changed:
        raise InputError(f"--extra {shlex.join(options.extra)}: sets {', '.join(changed)}, which the runner sets "
                         "itself (use its own flags: --seed, --budget-ips, --size, --fps, --cuts, model flags)")


def check_inputs(options: Options) -> Checked:
    """Validate everything before any render, and plan the m2v timeline (for the keyframe budget)."""
    for path, what, flag in ((options.audio, "song", "-ap"), (options.lyrics, "lyric file", "-lyr")):
        if not path.is_file():
            raise InputError(f"{path}: no such {what} ({flag})")
    if options.outdir.exists() and not options.outdir.is_dir():
        raise InputError(f"{options.outdir}: exists and is not a folder (-o)")
    check_extra(options)
    from metamusic import render

    m2v = next(c for c in CONFIGURATIONS if c.name == "m2v")
    config = _parse_render_flags([*shared_flags(options), "-lyr", str(options.lyrics), *m2v.flags])
    # The renderer's own checks (song, lyrics, model files, size, device), with the output folder
    # as the place it test-writes; nothing else is created there.
    config.output.output = str(options.outdir / "results.mp4")
    config.output.run_dir = str(options.outdir)
    inputs = render.check_inputs(config)
    steps = [s.steps for s in render.song_timeline(config, inputs)[0]]
    return Checked(config, inputs.audio, inputs.lyrics, steps, keyframe_budget(steps))


# ---------------------------------------------------------------------------------------------
# 2. experiments
# ---------------------------------------------------------------------------------------------


@dataclass
class Experiment:
    """One configuration's render and scores, filled in as the run proceeds."""

    name: str
    description: str
    argv: list[str]
    folder: Path
    status: str = "pending"  # "ok" | "failed"
    note: str = ""
    steps: int | None = None
    render_seconds: float = math.nan
    eval_seconds: float = math.nan
    metrics: dict[str, Any] = field(default_factory=dict)
    result: Any = None  # metamusic.evaluate.EvaluationResult once scored

    @property
    def video(self) -> Path:
        return self.folder / "video.mp4"

    @property
    def run_dir(self) -> Path:
        return self.folder / "video.run"

    @property
    def log_path(self) -> Path:
        return self.folder / "render.log"

    @property
    def command(self) -> str:
        """The render command as a user would type it (script path relative to the repository)."""
        script = Path(self.argv[1])
        shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
        return shlex.join(["python", str(shown), *self.argv[2:]])


def build_experiments(options: Options, keyframe_steps: int) -> list[Experiment]:
    """One subprocess argument list per selected configuration, each writing OUTDIR/NAME/video.mp4."""
    shared = shared_flags(options)
    out = []
    for c in CONFIGURATIONS:
        if c.name not in options.only:
            continue
        folder = options.outdir / c.name
        argv = [sys.executable, str(ROOT / c.script), *shared, *c.flags]
        if c.uses_lyrics:
            argv += ["-lyr", str(options.lyrics)]
        if c.name == "keyframes":
            argv += ["--keyframe_steps", str(keyframe_steps)]
        argv += ["-o", str(folder / "video.mp4")]
        out.append(Experiment(c.name, c.description, argv, folder))
    return out


# ---------------------------------------------------------------------------------------------
# 3. render
# ---------------------------------------------------------------------------------------------


def _record_path(exp: Experiment) -> Path:
    """render.json: the command, wall time and steps of a finished render (for --reuse)."""
    return exp.folder / "render.json"


def _reuse_key(argv: Sequence[str]) -> list[str]:
    """A render command without the interpreter and the device flags (a GPU does not change the render)."""
    out: list[str] = []
    skip = False
    for token in argv[1:]:
        if skip:
            skip = False
        elif token in ("-gid", "--gpu_id", "-cd", "--cuda_device"):
            skip = True
        else:
            out.append(token)
    return out


def _reusable(exp: Experiment) -> dict[str, Any] | None:
    """The record of an earlier successful render by the same command, if its video is still there."""
    try:
        rec = json.loads(_record_path(exp).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if rec.get("key") == _reuse_key(exp.argv) and rec.get("status") == "ok" and exp.video.is_file():
        return rec
    return None


def steps_run(exp: Experiment) -> int | None:
    """Optimisation steps the render's tasks actually ran (run.json's totals), None if unknown."""
    from metamusic.runfolder import RunFolder

    steps = RunFolder(exp.run_dir).read_info().get("totals", {}).get("steps")
    return int(steps) if isinstance(steps, (int, float)) else None


def render_one(exp: Experiment, reuse: bool = False) -> Experiment:
    """Render one configuration in a subprocess (argument list, output to render.log); fill status."""
    from metamusic.files import atomic_write_text

    if reuse and (rec := _reusable(exp)) is not None:
        exp.status, exp.render_seconds, exp.steps = "ok", float(rec["seconds"]), rec.get("steps")
        exp.note = "reused the earlier render (--reuse)"
        log.info("%s: reusing %s", exp.name, exp.video)
        return exp
    # A fresh render: drop this configuration's previous video and run folder (ours alone).
    exp.folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(exp.run_dir, ignore_errors=True)
    for stale in (exp.video, _record_path(exp)):
        stale.unlink(missing_ok=True)
    log.info("%s: rendering (%s)", exp.name, exp.log_path)
    t0 = time.perf_counter()
    with exp.log_path.open("w", encoding="utf-8") as logf:
        logf.write(f"$ {exp.command}\n")
        logf.flush()
        proc = subprocess.run(exp.argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                              check=False)
    exp.render_seconds = time.perf_counter() - t0
    text = exp.log_path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0 or not exp.video.is_file():
        exp.status = "failed"
        exp.note = f"render exit {proc.returncode}: {_last_line(text)} (see {exp.name}/render.log)"
        log.warning("%s: %s", exp.name, exp.note)
        return exp
    exp.status = "ok"
    exp.steps = steps_run(exp)
    atomic_write_text(_record_path(exp), json.dumps({"key": _reuse_key(exp.argv), "status": "ok", "seconds":
                                                     exp.render_seconds, "steps": exp.steps}, indent=2) + "\n")
    log.info("%s: rendered in %.1f s (%s steps)", exp.name, exp.render_seconds, exp.steps)
    return exp


def render_all(experiments: list[Experiment], jobs: int = 1, reuse: bool = False) -> list[Experiment]:
    """Render every experiment, ``jobs`` at a time; a failure never stops the others."""
    if jobs <= 1:
        return [render_one(e, reuse) for e in experiments]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda e: render_one(e, reuse), experiments))


# ---------------------------------------------------------------------------------------------
# 4. evaluate
# ---------------------------------------------------------------------------------------------


def _metrics(result: Any) -> dict[str, Any]:
    """The table's numbers from an EvaluationResult."""
    o, jump, sync = result.overall, result.largest_jump, result.sync
    return {
        "text_alignment": o["text_alignment"],
        "audio_alignment": o["audio_alignment"],
        "smoothness": o["smoothness"],
        "pixel_change": o["pixel_change"],
        "largest_jump": jump.get("value", math.nan),
        "largest_jump_time": jump.get("time", math.nan),
        "av_sync_difference": sync["difference"],
        "av_in_sync": bool(sync["within_one_frame"]),
    }


def evaluate_all(experiments: list[Experiment], checked: Checked, every: int = 1) -> None:
    """Score every rendered video (models loaded once) against the same lyric-interval segments."""
    from metamusic import evaluate as ev
    from metamusic.song.audio import load_audio

    todo = [e for e in experiments if e.status == "ok"]
    if not todo:
        return
    m = checked.config.models
    try:
        from metamusic.models.clip import load_clip
        from metamusic.models.wav2clip_loader import load_wav2clip

        perceptor = load_clip(m.clip_model, checked.config.device, checkpoints_dir=m.checkpoints_dir,
                              trust_torchscript=bool(m.trust_torchscript))
        wav2clip = load_wav2clip(m.wav2clip_checkpoint, checked.config.device)
    except Exception as exc:  # noqa: BLE001 - reported in every row, the table is still written
        for e in todo:
            e.status, e.note = "failed", f"evaluation: cannot load the models ({_last_line(str(exc))})"
        return
    audio = checked.audio
    if audio.sample_rate != 16000:  # Wav2CLIP needs 16 kHz (the renders analyse at -sf)
        audio = load_audio(audio.path, sample_rate=16000)
    for e in todo:
        t0 = time.perf_counter()
        try:
            # segments=None: lyric intervals (lead-in, then [t_i, t_i+1)), the same yardstick for all.
            e.result = ev.evaluate(e.video, audio, checked.lyrics, perceptor, wav2clip, segments=None, every=every)
            ev.write_report(e.result, e.folder / "evaluation")
            e.metrics = _metrics(e.result)
        except Exception as exc:  # noqa: BLE001 - one bad video must not lose the other rows
            e.status, e.note = "failed", f"evaluation: {exc.__class__.__name__}: {_last_line(str(exc))}"
            log.warning("%s: %s", e.name, e.note)
        e.eval_seconds = time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# 5. report
# ---------------------------------------------------------------------------------------------

CSV_COLUMNS = ("configuration", "status", "text_alignment", "audio_alignment", "smoothness", "pixel_change",
               "largest_jump", "largest_jump_time", "av_sync_difference", "av_in_sync", "steps",
               "render_seconds", "evaluation_seconds", "video", "note")


def results_csv(experiments: list[Experiment]) -> str:
    """results.csv: one row per configuration (empty cells where a number is missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for e in experiments:
        m = e.metrics
        w.writerow([e.name, e.status, *(_csv_num(m.get(k)) for k in CSV_COLUMNS[2:9]),
                    "" if "av_in_sync" not in m else str(m["av_in_sync"]).lower(),
                    "" if e.steps is None else e.steps, _csv_num(e.render_seconds), _csv_num(e.eval_seconds),
                    str(e.video) if e.video.is_file() else "", e.note])
    return buf.getvalue()


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def results_markdown(experiments: list[Experiment], options: Options, keyframe_steps: int) -> str:
    """results.md: what was run, then one table row per configuration, then each exact command."""
    size = f"{options.size[0]}x{options.size[1]}" if options.size else "the renderer's default size"
    lines = [
        f"# MetaMusic comparison: {options.audio.name}",
        "",
        f"Song `{options.audio}`, lyrics `{options.lyrics}`; seed {options.seed}; budget "
        f"{options.budget_ips:g} optimisation steps per second of music (keyframes: {keyframe_steps} steps "
        f"per keyframe, the m2v run's total divided by its segments); {size}; "
        f"{'%g fps' % options.fps if options.fps else 'default fps'}; "
        f"{options.cuts if options.cuts else 'default'} cut-outs"
        f"{'; extra flags `' + shlex.join(options.extra) + '`' if options.extra else ''}.",
        "",
        "Every video is scored by `metamusic.evaluate` against the same segments (the lyric intervals: a "
        "lead-in, then each line until the next): text = CLIP cosine of a frame with the lyric being sung; "
        "audio = cosine with the Wav2CLIP embedding of that interval's audio; smoothness = cosine of "
        "consecutive frames' CLIP embeddings (1 = still); pixel change = mean absolute change between "
        "consecutive frames in [0, 1]; largest jump = the largest 1 - cosine between consecutive frames "
        "(and when); A/V = video minus song length in seconds; wall time = the render subprocess, "
        "including model loading.",
        "",
        "| configuration | status | text align. | audio align. | smoothness | pixel change | largest jump | "
        "A/V sync diff (s) | steps | wall time (s) | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in experiments:
        m = e.metrics
        jump = _fmt(m.get("largest_jump"))
        if jump != "\u2013" and math.isfinite(m.get("largest_jump_time", math.nan)):
            jump += f" @ {m['largest_jump_time']:.2f} s"
        lines.append("| " + " | ".join([
            f"`{e.name}`", e.status, _fmt(m.get("text_alignment")), _fmt(m.get("audio_alignment")),
            _fmt(m.get("smoothness")), _fmt(m.get("pixel_change")), jump,
            _fmt(m.get("av_sync_difference"), 3, signed=True), "\u2013" if e.steps is None else str(e.steps),
            _fmt(e.render_seconds, 1), _cell(e.note),
        ]) + " |")
    lines += ["", "Configurations and their exact commands:", ""]
    for e in experiments:
        lines.append(f"- `{e.name}`: {e.description}.  \n  `{e.command}`")
    lines += ["", "Per-configuration details: `NAME/evaluation/` (metrics.csv per segment, summary.json, "
              "plot.png), `NAME/render.log`, the run folder `NAME/video.run/`. Combined plot: `comparison.png`.",
              ""]
    return "\n".join(lines)


_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def comparison_figure(experiments: list[Experiment], title: str = "") -> Any:
    """A matplotlib Figure (Agg canvas, no pyplot): bars of every metric, curves over time per configuration."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 13), dpi=90)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, 4, height_ratios=(1, 1, 1.2, 1.2))
    names = [e.name for e in experiments]
    color = {e.name: _COLORS[i % len(_COLORS)] for i, e in enumerate(experiments)}
    bars = (
        ("text_alignment", "text alignment (higher: follows lyrics)"),
        ("audio_alignment", "audio alignment (higher: follows audio)"),
        ("smoothness", "smoothness (higher: steadier)"),
        ("pixel_change", "pixel change (lower: steadier)"),
        ("steps", "optimisation steps"),
        ("render_seconds", "render wall time (s)"),
        ("av_sync_difference", "A/V: video - song (s)"),
        ("largest_jump", "largest jump (1 - cosine)"),
    )
    for k, (key, label) in enumerate(bars):
        ax = fig.add_subplot(grid[k // 4, k % 4])
        values = []  # only configurations that rendered and were scored get a bar
        for e in experiments:
            v = getattr(e, key) if key in ("steps", "render_seconds") else e.metrics.get(key)
            ok = e.status == "ok" and v is not None and math.isfinite(float(v))
            values.append(float(v) if ok else math.nan)
        ax.bar(range(len(names)), [0.0 if math.isnan(v) else v for v in values],
               color=[color[n] for n in names])
        for i, (v, e) in enumerate(zip(values, experiments)):
            text = f"{v:.3g}" if not math.isnan(v) else ("n/a" if e.status == "ok" else e.status)
            ax.annotate(text, (i, 0.0 if math.isnan(v) else v), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, color="0.25")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    curves = (("text_scores", "frame_time", "text alignment over time"),
              ("pair_cosine", "pair_time", "smoothness over time (consecutive frames)"))
    end = max((float(e.result.sync["audio_duration"]) for e in experiments if e.result is not None), default=0.0)
    for row, (series, when, label) in enumerate(curves, start=2):
        ax = fig.add_subplot(grid[row, :])
        lyric_marks: list[tuple[float, str]] = []
        for e in experiments:
            r = e.result
            if r is None:
                continue
            t = r.frame_time[1:] if when == "pair_time" else r.frame_time
            ax.plot(t, getattr(r, series), color=color[e.name], lw=1.1, label=e.name)
            lyric_marks = lyric_marks or list(r.lyric_marks)
        for at, _ in lyric_marks:
            ax.axvline(at, color="0.6", lw=0.8, ls="--")
        ax.set_title(f"{label}; lyric lines dashed", fontsize=9)
        ax.set_xlabel("time (s)")
        if end > 0:
            ax.set_xlim(0.0, end)
        ax.grid(alpha=0.25)
        if ax.lines:
            ax.legend(loc="lower right", fontsize=8, ncol=3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def write_results(experiments: list[Experiment], options: Options, keyframe_steps: int) -> dict[str, Path]:
    """Write OUTDIR/results.md, results.csv and comparison.png (each atomically)."""
    from metamusic.files import atomic_path, atomic_write_text

    out = options.outdir
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "plot": out / "comparison.png"}
    atomic_write_text(paths["markdown"], results_markdown(experiments, options, keyframe_steps))
    atomic_write_text(paths["csv"], results_csv(experiments))
    fig = comparison_figure(experiments, f"{options.audio.name}: seed {options.seed}, "
                                         f"{options.budget_ips:g} steps per second of music")
    with atomic_path(paths["plot"]) as tmp:
        fig.savefig(tmp, format="png")
    return paths


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The runner: check, build, render, evaluate, report; 1 if any configuration failed."""
    options = parse_options(argv)
    checked = check_inputs(options)  # 1
    experiments = build_experiments(options, checked.keyframe_steps)  # 2
    log.info("%d configuration(s) into %s; m2v plan: %d segments, %d steps -> %d steps per keyframe",
             len(experiments), options.outdir, len(checked.m2v_steps), sum(checked.m2v_steps),
             checked.keyframe_steps)
    render_all(experiments, options.jobs, options.reuse)  # 3
    evaluate_all(experiments, checked, options.every)  # 4
    paths = write_results(experiments, options, checked.keyframe_steps)  # 5
    for e in experiments:
        print(f"{e.name:12s} {e.status:8s} {e.note}".rstrip())
    print(f"wrote {paths['markdown']}, {paths['csv']}, {paths['plot']}")
    return 1 if any(e.status == "failed" for e in experiments) else 0


if __name__ == "__main__":
    from metamusic.cli import run_cli

    sys.exit(run_cli(main))
