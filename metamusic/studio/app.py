"""The studio's page (Gradio) and its actions; every render is the generate.py command in a child process.

A project is a folder under the workdir: ``uploads/`` (the song and lyrics, safe names),
``settings.json`` (the page's controls), ``sketch/timeline.png`` (drawn before any render),
``video.mp4`` with its run folder ``video.run`` and the preview ``video.preview.mp4`` in
``video.preview.run``, and ``evaluation/`` (evaluate.py's metrics.csv, summary.json, plot.png).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metamusic.errors import InputError, MetaMusicError
from metamusic.studio import (
    AUDIO_SUFFIXES,
    LYRIC_SUFFIXES,
    MAX_LYRICS_BYTES,
    MAX_SONG_BYTES,
    TABLE_COLUMNS,
    apply_rows,
    check_upload,
    first_edited,
    inside,
    list_runs,
    read_progress,
    safe_name,
    srt_to_vtt,
    storyboard_rows,
)

MODES = ["m2v", "fused", "interpolate", "keyframes"]
# A child process running a command-line entry point of the library (argument list, no shell).
_GENERATE = "import sys; from metamusic.cli import generate_main; sys.exit(generate_main())"
_INTERPOLATE = "import sys; from metamusic.cli import interpolate_main; sys.exit(interpolate_main())"
_EVALUATE = "import sys; from metamusic.cli import run_cli; from metamusic.evaluate import main; sys.exit(run_cli(main))"


@dataclass
class Settings:
    """The page's render controls, saved in the project's settings.json."""

    mode: str = "m2v"
    theme: str = ""
    prefix: str = ""
    width: int = 256
    height: int = 256
    steps: float = 10.0  # optimisation steps per second of song (-ips)
    preview_steps: int = 3
    seed: int = 0

    @classmethod
    def load(cls, path: Path) -> Settings:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return cls()


@dataclass
class Studio:
    """The studio's server-side state: the workdir, the model flags, the render in progress."""

    workdir: Path
    model_argv: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- projects ---------------------------------------------------------------------------
    def project(self, name: str) -> Path:
        if not name:
            raise InputError("no song loaded: upload a song and press 'Load song' (or reopen a run)")
        return inside(self.workdir, self.workdir / name)

    def new_project(self, song: str, lyrics: str | None) -> Path:
        song_name = safe_name(song, AUDIO_SUFFIXES, "song")
        check_upload(Path(song), MAX_SONG_BYTES, "song")
        lyric_name = safe_name(lyrics, LYRIC_SUFFIXES, "lyrics") if lyrics else None
        if lyrics:
            check_upload(Path(lyrics), MAX_LYRICS_BYTES, "lyric file")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        project = self.workdir / f"{Path(song_name).stem}-{stamp}"
        n = 1
        while project.exists():
            n += 1
            project = self.workdir / f"{Path(song_name).stem}-{stamp}-{n}"
        uploads = project / "uploads"
        uploads.mkdir(parents=True)
        shutil.copyfile(song, uploads / song_name)
        if lyrics and lyric_name:
            shutil.copyfile(lyrics, uploads / lyric_name)
        return project

    @staticmethod
    def uploads(project: Path) -> tuple[Path, Path | None]:
        files = sorted((project / "uploads").iterdir())
        song = next(p for p in files if p.suffix in AUDIO_SUFFIXES)
        lyrics = next((p for p in files if p.suffix in LYRIC_SUFFIXES), None)
        return song, lyrics

    def argv(self, project: Path, s: Settings, *, preview: bool) -> list[str]:
        """The generate.py command line of a render of ``project`` with settings ``s``."""
        song, lyrics = self.uploads(project)
        argv = [*self.model_argv, "-ap", str(song), "-o", str(project / "video.mp4"),
                "-s", str(int(s.width)), str(int(s.height)), "-ips", f"{float(s.steps):g}", "-sd", str(int(s.seed)),
                "--preview_steps", str(int(s.preview_steps)), "--save_png", "-se", "1"]
        if lyrics is not None:
            argv += ["-lyr", str(lyrics), "--captions", "srt"]
        if s.mode in ("m2v", "fused"):
            argv += ["--mode", s.mode]
        elif s.mode == "keyframes":
            argv += ["--keyframes"]
        if s.theme:
            argv += ["--theme", s.theme]
        if s.prefix:
            argv += ["--prompt_prefix", s.prefix]
        if preview:
            argv.append("--preview")
        return argv

    def config(self, project: Path, s: Settings, *, preview: bool):
        from metamusic.cli import parse_config
        from metamusic.config import Config
        from metamusic.render import resolve_config

        base = Config()
        if s.mode == "interpolate":  # as generate_interpolate.py
            base.music.mode = "interpolate"
        config, _ = parse_config(self.argv(project, s, preview=preview), "metamusic-studio", "", base)
        if s.mode == "interpolate":
            config.music.mode = "interpolate"
        return resolve_config(config)

    # -- the song's timeline before any render ---------------------------------------------------
    def sketch(self, project: Path, s: Settings) -> tuple[Path | None, list]:
        """Draw the song's timeline (sketch/timeline.png) and return it with the planned storyboard."""
        from metamusic.render.finish import write_timeline_sheet
        from metamusic.render.inputs import check_inputs
        from metamusic.render.plan import make_plan, song_timeline
        from metamusic.runfolder import RunFolder

        config = self.config(project, s, preview=False)
        inputs = check_inputs(config)
        segments, analysis = song_timeline(config, inputs)
        sketch = RunFolder(project / "sketch")
        sketch.create()
        write_timeline_sheet(sketch, inputs, make_plan(config, inputs, segments, analysis))
        sketch.write_storyboard(segments)
        picture = sketch.root / "timeline.png"
        return (picture if picture.is_file() else None), segments

    def storyboard(self, project: Path) -> list:
        """The newest storyboard of the project: the render's, else the preview's, else the sketch's."""
        from metamusic.runfolder import RunFolder

        for name in ("video.run", "video.preview.run", "sketch"):
            run = RunFolder(project / name)
            if run.storyboard_path.is_file():
                return run.read_storyboard()
        raise InputError(f"{project.name}: no storyboard yet; press 'Load song'")

    # -- renders --------------------------------------------------------------------------------
    def prepare_run(self, project: Path, s: Settings, rows: Sequence[Sequence], *, preview: bool) -> list[str]:
        """Put the table's storyboard into the run folder; return the command line that renders it.

        A finished run whose storyboard differs is re-rendered from the first edited segment
        (--from_segment); a new run folder (or one whose settings changed) starts with the table.
        """
        from metamusic.render.inputs import output_paths
        from metamusic.runfolder import RunFolder, config_differences

        config = self.config(project, s, preview=preview)
        run = RunFolder(output_paths(config)[1])
        edited = apply_rows(self.storyboard(project), rows)
        argv = self.argv(project, s, preview=preview)
        saved = run.saved_config()
        if saved is not None and run.storyboard_path.is_file() and not config_differences(saved, config):
            k = first_edited(run.read_storyboard(), edited)
            if k is not None:
                run.write_storyboard(edited)
                argv += ["--from_segment", str(k)]
            return argv
        if run.root.exists():
            run.start_over()
        run.create()
        run.write_config(config)
        run.write_storyboard(edited)
        return argv

    def start(self, argv: list[str], log: Path, code: str = _GENERATE) -> subprocess.Popen:
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                raise InputError("a render is already running: wait for it or press Cancel")
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "wb") as err:
                self.process = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL,
                                                stderr=err, stdin=subprocess.DEVNULL)
            return self.process

    def cancel(self) -> str:
        """Stop the render as Ctrl-C does: the finished tasks stay and a later render resumes."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                return "nothing is running"
            self.process.send_signal(signal.SIGINT)
        return "cancelling..."


def last_error(log: Path) -> str:
    """The library's one-line message from a child's stderr (its last 'error:' line)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "the render stopped without a message"
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else (lines[-1] if lines else "the render stopped without a message")


def captions_vtt(video: Path) -> Path | None:
    """X.vtt beside X.mp4: the render's own, or converted from its X.srt."""
    vtt, srt = video.with_suffix(".vtt"), video.with_suffix(".srt")
    if not vtt.is_file() and srt.is_file():
        from metamusic.files import atomic_write_text

        atomic_write_text(vtt, srt_to_vtt(srt.read_text(encoding="utf-8")))
    return vtt if vtt.is_file() else None


def downloads(project: Path, video: Path, run_dir: Path) -> list[str]:
    files = [video, video.with_suffix(".srt"), video.with_suffix(".vtt"), run_dir / "storyboard.yaml"]
    return [str(p) for p in files if p.is_file()]


# ---------------------------------------------------------------------------------------------
# The page


def first_storyboard_page(run_dir: Path) -> str | None:
    """The run's first storyboard page (the one a short song fits on), if it has been drawn."""
    from metamusic.runfolder import RunFolder

    page = RunFolder(run_dir).storyboard_page(0)
    return str(page) if page.is_file() else None


def _fail(exc: MetaMusicError) -> str:
    """The status line of an error."""
    return f"**error:** {exc}"


def _settings_of(mode, theme, prefix, width, height, steps, preview_steps, seed) -> Settings:
    """The page's controls as Settings."""
    return Settings(str(mode), str(theme or ""), str(prefix or ""), int(width), int(height), float(steps),
                    int(preview_steps), int(seed))


def _save_settings(project: Path, s: Settings) -> None:
    """Keep the controls in the project's settings.json (reopen restores them)."""
    from dataclasses import asdict

    from metamusic.files import atomic_write_text

    atomic_write_text(project / "settings.json", json.dumps(asdict(s), indent=1))


class Actions:
    """What the page's buttons do; each returns (or yields) the values of its output components."""

    def __init__(self, studio: Studio):
        self.studio = studio

    def load_song(self, song, lyrics, *controls):
        """Start a project from the uploads: its timeline picture and storyboard table."""
        import gradio as gr

        try:
            if not song:
                raise InputError("no song: upload an audio file first")
            s = _settings_of(*controls)
            project = self.studio.new_project(song, lyrics)
            _save_settings(project, s)
            picture, segments = self.studio.sketch(project, s)
            return (project.name, str(picture) if picture else None, storyboard_rows(segments),
                    f"loaded {project.name}: {len(segments)} segments",
                    gr.update(choices=list_runs(self.studio.workdir)))
        except MetaMusicError as exc:
            return None, None, None, _fail(exc), gr.update()

    def render(self, name, rows, *controls, preview: bool) -> Iterator[tuple]:
        """Render (or preview) the edited storyboard in a child process, yielding its progress."""
        import gradio as gr

        try:
            project = self.studio.project(name)
            s = _settings_of(*controls)
            _save_settings(project, s)
            argv = self.studio.prepare_run(project, s, _rows(rows), preview=preview)
            config = self.studio.config(project, s, preview=preview)
            from metamusic.render.inputs import output_paths

            video, run_dir = output_paths(config)
            done_before = len(list((run_dir / "tasks").glob("*.json")))
            log = project / ("preview.log" if preview else "render.log")
            proc = self.studio.start(argv, log, _INTERPOLATE if s.mode == "interpolate" else _GENERATE)
        except MetaMusicError as exc:
            yield _fail(exc), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
            return
        started = time.time()
        frame = run_dir / "progress.png"
        what = "preview" if preview else "render"
        while proc.poll() is None:
            progress = read_progress(run_dir, started, done_before)
            line = progress.line() if progress else "loading the models..."
            yield (f"{what}: {line}", str(frame) if frame.is_file() else gr.update(), gr.update(), gr.update(),
                   gr.update(), gr.update())
            time.sleep(0.5)
        if proc.returncode == 130:
            message = f"{what} cancelled; {run_dir.name} keeps its finished segments: press the button again to resume"
            yield message, gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
            return
        if proc.returncode != 0 or not video.is_file():
            yield _fail(last_error(log)), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
            return
        vtt = captions_vtt(video)
        table = storyboard_rows(self.studio.storyboard(project))
        yield (f"{what} finished: {video.name} ({time.time() - started:.0f} s)",
               str(frame) if frame.is_file() else gr.update(),
               gr.update(value=str(video), subtitles=str(vtt) if vtt else None),
               downloads(project, video, run_dir), table, first_storyboard_page(run_dir))

    def evaluate(self, name):
        """Score the project's video with evaluate.py: its plot, summary and a status line."""

        try:
            project = self.studio.project(name)
            video = project / "video.mp4"
            if not video.is_file():
                video = project / "video.preview.mp4"
            if not video.is_file():
                raise InputError(f"{project.name}: nothing rendered yet; render first")
            song, lyrics = self.studio.uploads(project)
            out = project / "evaluation"
            argv = [str(video), "-ap", str(song), *(["-lyr", str(lyrics)] if lyrics else []), *self.studio.model_argv,
                    "-o", str(out)]
            log = project / "evaluate.log"
            with open(log, "wb") as err:
                rc = subprocess.run([sys.executable, "-c", _EVALUATE, *argv], check=False, stdout=subprocess.DEVNULL,
                                    stderr=err, stdin=subprocess.DEVNULL).returncode
            if rc != 0:
                raise InputError(last_error(log).removeprefix("error: "))
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
            plot = out / "plot.png"
            return str(plot) if plot.is_file() else None, summary, f"evaluated {video.name}"
        except (MetaMusicError, OSError, ValueError) as exc:
            return None, None, f"**error:** {exc}"

    def reopen(self, name):
        """Reopen an earlier project: its picture, storyboard, video and controls."""
        import gradio as gr

        try:
            project = self.studio.project(name)
            s = Settings.load(project / "settings.json")
            pictures = [project / n / "timeline.png" for n in ("video.run", "video.preview.run", "sketch")]
            picture = next((str(p) for p in pictures if p.is_file()), None)
            video = next((v for v in (project / "video.mp4", project / "video.preview.mp4") if v.is_file()), None)
            vtt = captions_vtt(video) if video else None
            return (project.name, picture, storyboard_rows(self.studio.storyboard(project)),
                    gr.update(value=str(video), subtitles=str(vtt) if vtt else None) if video else None,
                    s.mode, s.theme, s.prefix, s.width, s.height, s.steps, s.preview_steps, s.seed,
                    f"reopened {project.name}")
        except MetaMusicError as exc:
            return (gr.update(),) * 12 + (_fail(exc),)


def build(studio: Studio):
    """The Gradio Blocks of the studio: the layout, and each button wired to its Actions method."""
    import gradio as gr

    act = Actions(studio)
    with gr.Blocks(title="MetaMusic Studio", analytics_enabled=False) as page:
        project = gr.State(None)
        gr.Markdown("# MetaMusic Studio\nA song in, a VQGAN-CLIP music video out (Music2Video).")
        with gr.Row():
            song = gr.File(label="song (wav, mp3, flac, ogg, m4a)", file_types=list(AUDIO_SUFFIXES),
                           elem_id="song")
            lyrics = gr.File(label="lyrics (LRC, SRT, M2V CSV, MM:SS text), optional",
                             file_types=list(LYRIC_SUFFIXES), elem_id="lyrics")
        with gr.Row():
            mode = gr.Dropdown(MODES, value="m2v", label="mode", elem_id="mode")
            theme = gr.Textbox(label="theme", placeholder="oil painting, by Monet", elem_id="theme")
            prefix = gr.Textbox(label="prompt prefix", placeholder="a scene of", elem_id="prefix")
        with gr.Row():
            width = gr.Number(256, label="width", precision=0, elem_id="width")
            height = gr.Number(256, label="height", precision=0, elem_id="height")
            steps = gr.Number(10, label="steps per second of song", elem_id="steps")
            preview_steps = gr.Number(3, label="preview steps per segment", precision=0, elem_id="preview_steps")
            seed = gr.Number(0, label="seed", precision=0, elem_id="seed")
        controls = [mode, theme, prefix, width, height, steps, preview_steps, seed]
        with gr.Row():
            load = gr.Button("Load song", elem_id="load")
            runs = gr.Dropdown(list_runs(studio.workdir), label="earlier runs", elem_id="runs")
            reopen_button = gr.Button("Reopen", elem_id="reopen")
        status = gr.Markdown("", elem_id="status")
        timeline = gr.Image(label="timeline", type="filepath", interactive=False, elem_id="timeline")
        table = gr.Dataframe(headers=TABLE_COLUMNS, label="storyboard (edit kind, text, weights)",
                             interactive=True, elem_id="storyboard", static_columns=[0, 1, 2])
        with gr.Row():
            preview = gr.Button("Preview", elem_id="preview")
            render_button = gr.Button("Render", variant="primary", elem_id="render")
            cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
            evaluate_button = gr.Button("Evaluate", elem_id="evaluate")
        with gr.Row():
            frame = gr.Image(label="current frame", type="filepath", interactive=False, elem_id="frame")
            video = gr.Video(label="video", interactive=False, elem_id="video")
        pages = gr.Image(label="storyboard, first page (storyboard_001.png in the run folder)", type="filepath",
                         interactive=False, elem_id="storyboard_page")
        files = gr.File(label="downloads", file_count="multiple", interactive=False, elem_id="downloads")
        with gr.Row():
            plot = gr.Image(label="evaluation", type="filepath", interactive=False, elem_id="plot")
            summary = gr.JSON(label="evaluation summary", elem_id="summary")

        load.click(act.load_song, [song, lyrics, *controls], [project, timeline, table, status, runs])
        outputs = [status, frame, video, files, table, pages]
        preview.click(lambda *a: (yield from act.render(*a, preview=True)), [project, table, *controls], outputs)
        render_button.click(lambda *a: (yield from act.render(*a, preview=False)), [project, table, *controls], outputs)
        cancel.click(studio.cancel, None, status)
        evaluate_button.click(act.evaluate, project, [plot, summary, status])
        reopen_button.click(act.reopen, runs, [project, timeline, table, video, *controls, status])
    return page


def _rows(value: Any) -> list[list]:
    """The Dataframe's value as a list of rows (Gradio hands a pandas DataFrame)."""
    if hasattr(value, "values"):
        return value.values.tolist()
    return [list(r) for r in (value or [])]
