"""Safe reading of untrusted checkpoint files.

Every model file goes through :func:`load_weights`, which never runs code from the file:
``torch.load(weights_only=True)`` with an explicit allow-list of stand-in classes for the few
foreign globals that official checkpoints pickle (for example the Lightning callback class in
the VQGAN ``.ckpt``). Anything else is refused with a message naming the global.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterable

import torch

from metamusic.errors import CheckpointError

_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<?xml")


def describe_missing(path: Path, what: str, hint: str) -> CheckpointError:
    """Return the error for a model file that does not exist."""
    return CheckpointError(f"{path}: {what} not found; {hint}")


def check_model_file(path: str | Path, what: str, hint: str) -> Path:
    """Check that ``path`` exists, is a non-empty file and is not an HTML page.

    ``what`` names the file's role ("VQGAN checkpoint"), ``hint`` says how to get it
    ("download it with: bash download_models.sh vqgan_imagenet_f16_16384").
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise describe_missing(path, what, hint)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} is not a file")
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if not head:
        raise CheckpointError(f"{path}: {what} is empty; {hint}")
    if head.lstrip().lower().startswith(_HTML_MARKERS):
        raise CheckpointError(
            f"{path}: {what} is an HTML page, not a model file (a dead download mirror?); {hint}"
        )
    return path


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - only used to improve an error message
        return []


def load_weights(
    path: str | Path,
    what: str,
    hint: str,
    aliases: Iterable[tuple[type, str]] = (),
    map_location: str | torch.device = "cpu",
) -> Any:
    """Load a pickled checkpoint weights-only; refuse anything that would execute code.

    ``aliases`` are ``(stand_in_class, "dotted.name.in.the.pickle")`` pairs that the file may
    reference (only as opaque objects; no code of the original class runs).
    """
    path = check_model_file(path, what, hint)
    allowed = list(aliases)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        names = [n for n in _unsafe_globals(path) if n not in {name for _, name in allowed}]
        if names:
            raise CheckpointError(
                f"{path}: refusing to load {what}: it pickles the unknown global(s) "
                f"{', '.join(names)} (untrusted code is never executed)"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: {what} is corrupt or not a checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        text = str(exc)
        if "central directory" in text or "zip archive" in text or isinstance(exc, EOFError):
            problem = "is truncated or corrupt (an interrupted download?)"
        else:
            problem = f"could not be read ({text.strip().splitlines()[0] if text.strip() else type(exc).__name__})"
        raise CheckpointError(f"{path}: {what} {problem}; {hint}") from None
