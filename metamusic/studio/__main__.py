"""``python -m metamusic.studio`` / ``metamusic-studio``: serve MetaMusic Studio on this machine.

    python -m metamusic.studio -ckpt checkpoints/vqgan_imagenet_f16_16384.ckpt --workdir studio_runs
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from metamusic.errors import InputError

# Model flags passed to every render, as generate.py spells them.
MODEL_FLAGS = [("-conf", "--vqgan_config"), ("-ckpt", "--vqgan_checkpoint"), ("-m", "--clip_model"),
               ("--wav2clip_checkpoint",), ("--checkpoints_dir",), ("-gid", "--gpu_id")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metamusic-studio", description="MetaMusic Studio: a local web page to "
                                "make a music video from a song (serves this machine only by default).")
    for names in MODEL_FLAGS:
        p.add_argument(*names, dest=names[-1].lstrip("-"), help=f"as generate.py's {names[-1]}")
    p.add_argument("--trust_torchscript", action="store_true", help="as generate.py's --trust_torchscript")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--workdir", default="studio_runs", help="folder holding the uploads and runs (default studio_runs/)")
    return p


def model_argv(args: argparse.Namespace) -> list[str]:
    """The model flags to pass on to generate.py (file paths made absolute)."""
    out: list[str] = []
    for names in MODEL_FLAGS:
        value = getattr(args, names[-1].lstrip("-"))
        if value is None:
            continue
        if names[-1] != "--gpu_id" and Path(value).exists():
            value = str(Path(value).resolve())
        out += [names[-1], value]
    if args.trust_torchscript:
        out.append("--trust_torchscript")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = Path(args.workdir).resolve()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--workdir {args.workdir}: cannot create it ({exc.strerror})") from None
    # Before Gradio is imported: no usage analytics, uploads cached inside the workdir.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / ".uploads")
    try:
        import gradio as gr
    except ImportError:
        raise InputError("the studio needs Gradio: pip install 'metamusic[studio]' "
                         "(or pip install --no-deps -r requirements-studio.txt)") from None
    from metamusic.studio.app import Studio, build

    studio = Studio(workdir, model_argv(args))
    page = build(studio)
    # Fonts of the operating system: the default theme would fetch web fonts from a CDN.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    page.queue(default_concurrency_limit=2)
    _, url, _ = page.launch(server_name=args.host, server_port=args.port, share=False, prevent_thread_lock=True,
                            allowed_paths=[str(workdir)], max_file_size=MAX_UPLOAD, theme=theme, quiet=True,
                            footer_links=[], ssr_mode=False, enable_monitoring=False, mcp_server=False,
                            pwa=False)
    print(f"MetaMusic Studio: {url} (workdir {workdir})", flush=True)
    try:
        page.block_thread()
    except KeyboardInterrupt:
        pass
    return 0


MAX_UPLOAD = "60mb"


def cli() -> int:
    from metamusic.cli import run_cli

    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
