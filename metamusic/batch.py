"""Render many songs from a manifest: ``python -m metamusic.batch MANIFEST [--ray ADDRESS]``.

MANIFEST is a CSV (a header, then one row per song) or a YAML list (one mapping per song, or
``songs:`` holding that list). Every song has ``audio`` and ``output`` and may have ``lyrics`` and
any flag of generate.py as a column/key without its dashes (``theme``, ``keyframes``,
``keyframe_steps``, ``size: 256 256``); ``script: interpolate`` renders it with
generate_interpolate.py. Empty cells are left out; true/false switch a flag on or off.

Each song is its own render with its own run folder, so re-running the manifest skips the songs
that are finished and resumes the others. Without ``--ray`` the songs render one after another
here; with ``--ray`` as many render at once as the cluster has GPUs (or CPU slots of
``--ray_cpus_per_task``), each on one worker. A bad row fails alone with its one-line error;
the summary table at the end lists every song (song, status, seconds, output). Exit status 0
when every song is done, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metamusic.errors import InputError

# One render of a manifest row: generate.py or generate_interpolate.py, in a child process.
_RENDER = ("import sys; from metamusic import cli; "
           "sys.exit((cli.interpolate_main if sys.argv[1] == 'interpolate' else cli.generate_main)(sys.argv[2:]))")
_SCRIPTS = ("generate", "interpolate")


@dataclass
class Song:
    name: str
    script: str
    argv: list[str]
    output: str
    error: str | None = None  # a bad row: why, in one line
    status: str = "waiting"
    seconds: float = 0.0


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV or YAML manifest, as dicts (InputError naming the file if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if isinstance(data, dict):
            data = data.get("songs")
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"{path}: expected a list of songs (one mapping per song)")
        rows = data
    else:
        rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise InputError(f"{path}: no songs in the manifest")
    return rows


def row_to_song(index: int, row: dict[str, Any]) -> Song:
    """A manifest row -> the argument list of its render; a bad row keeps its one-line error."""
    row = {str(k).strip().lstrip("-"): v for k, v in row.items() if k is not None}
    name = f"row {index + 1}"
    script = str(row.pop("script", "") or "generate").strip()
    audio, output = row.get("audio"), row.get("output")
    argv: list[str] = []
    flags = _flag_names()
    for key, value in row.items():
        flag = flags.get(key)
        if flag is None:
            return Song(name, script, [], str(output or ""), error=f"{name}: unknown column {key!r} (not a flag)")
        if value is None or (isinstance(value, str) and not value.strip()) or value is False:
            continue
        if isinstance(value, str) and value.strip().lower() in ("false", "no"):
            continue
        if value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes")):
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *(str(v) for v in value)]
        elif key in ("size", "noise_prompt_seeds", "noise_prompt_weights", "augments"):
            argv += [flag, *str(value).split()]
        else:
            argv += [flag, str(value)]
    song = Song(f"{name}: {audio}" if audio else name, script, argv, str(output or ""))
    if script not in _SCRIPTS:
        song.error = f"{name}: script {script!r}: expected one of {' '.join(_SCRIPTS)}"
    elif not audio or not output:
        song.error = f"{name}: needs both 'audio' and 'output'"
    return song


def _flag_names() -> dict[str, str]:
    """Manifest column -> flag: every name of a generate.py flag without its dashes (``gid``,
    ``gpu_id``), and ``audio``."""
    from metamusic.cli import FLAGS

    names = {name.lstrip("-"): flag.names[-1] for flag in FLAGS for name in flag.names}
    names["audio"] = "--audio_prompt"
    return names


def is_finished(song: Song) -> bool:
    """True when the song's video exists and its run folder records every task as finished."""
    from metamusic.config import Config
    from metamusic.render.inputs import output_paths

    config = Config()
    config.output.output = song.output
    if "--run_dir" in song.argv:
        config.output.run_dir = song.argv[song.argv.index("--run_dir") + 1]
    video, run_dir = output_paths(config)
    try:
        totals = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["totals"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return video.is_file() and totals.get("tasks") == totals.get("tasks_finished")


def render_all(songs: list[Song], *, ray: str | None, cpus_per_task: int, slots: int) -> None:
    """Render the songs, ``slots`` at a time, each in a child process; fill in status and seconds."""
    queue = []
    for song in songs:
        if song.error:
            song.status = f"error: {song.error}"
        elif is_finished(song):
            song.status = "done (skipped: already rendered)"
        else:
            queue.append(song)
    running: list[tuple[Song, subprocess.Popen, float]] = []
    extra = ["--ray", ray, "--ray_cpus_per_task", str(cpus_per_task), "--ray_workers", "1"] if ray else []
    try:
        while queue or running:
            while queue and len(running) < slots:
                song = queue.pop(0)
                print(f"rendering {song.name} -> {song.output}", file=sys.stderr, flush=True)
                cmd = [sys.executable, "-c", _RENDER, song.script, *song.argv, *extra]
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                running.append((song, proc, time.perf_counter()))
            song, proc, t0 = running.pop(0)
            _, err = proc.communicate()
            song.seconds = time.perf_counter() - t0
            lines = [line for line in err.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("error: ") or ": error: " in line]
            why = errors[-1] if errors else (lines[-1] if lines else "")
            song.status = "done" if proc.returncode == 0 else f"failed (exit {proc.returncode}): {why}".rstrip(": ")
    finally:
        for _, proc, _ in running:
            if proc.poll() is None:
                proc.terminate()  # saved like Ctrl-C: the same manifest resumes it
                proc.wait()


def join_cluster(address: str, cpus_per_task: int) -> tuple[int, str]:
    """Songs that can render at once on the cluster (its GPUs, else its CPU slots) and the address
    the songs join (``local`` starts one private cluster here, shared by every song)."""
    from metamusic.render.ray_executor import connect

    ray = connect(address)
    resources = ray.cluster_resources()
    if address == "local":
        address = ray.get_runtime_context().gcs_address
    else:
        ray.shutdown()
    gpus = int(resources.get("GPU", 0))
    return (gpus if gpus else max(1, int(resources.get("CPU", 1)) // cpus_per_task)), address


def summary_table(songs: Sequence[Song]) -> str:
    rows = [("song", "status", "seconds", "output")]
    rows += [(s.name, s.status, f"{s.seconds:.1f}", s.output) for s in songs]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]) for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    from metamusic.cli import run_cli

    def run(argv: Sequence[str] | None) -> int:
        parser = argparse.ArgumentParser(prog="metamusic-batch", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("manifest", type=Path, help="CSV or YAML, one song per row")
        parser.add_argument("--ray", help="Ray cluster address (auto, local, host:port, ray://host:port)")
        parser.add_argument("--ray_cpus_per_task", type=int, default=1, help="on CPU: CPUs of each song's worker")
        args = parser.parse_args(argv)
        rows = read_manifest(args.manifest)
        songs = [row_to_song(i, row) for i, row in enumerate(rows)]
        slots, address = join_cluster(args.ray, args.ray_cpus_per_task) if args.ray else (1, None)
        render_all(songs, ray=address, cpus_per_task=args.ray_cpus_per_task, slots=slots)
        print(summary_table(songs))
        return 0 if all(s.status.startswith("done") for s in songs) else 1

    return run_cli(run, argv)


if __name__ == "__main__":
    sys.exit(main())
