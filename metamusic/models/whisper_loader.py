"""Load an OpenAI Whisper checkpoint (``small.pt`` etc.) weights-only into ``whisper.model.Whisper``.

The official files are a dict ``{"dims": {...ModelDimensions...}, "model_state_dict": {...}}``
(openai/whisper ``whisper/__init__.py``). We read them with :func:`load_weights` (never
``weights_only=False``), build the network from ``dims`` and load the weights strictly. The
cross-attention heads used for word timing are the published ones for the official sizes,
recognised from the dimensions; any other checkpoint uses Whisper's default (all heads of the
upper half of the decoder). The ``whisper`` package is the optional extra ``metamusic[lyrics]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from metamusic.errors import CheckpointError, InputError
from metamusic.models.checkpoint_io import load_weights

WHAT = "Whisper checkpoint"
DEFAULT_WHISPER = "checkpoints/whisper_small.pt"
NAMES = ("small", "base", "medium")  # the sizes download_models.sh fetches as whisper_<name>
_DIM_KEYS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
             "n_vocab", "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer")
# (n_audio_state, n_text_layer, n_vocab) -> official model name, for its word-timing heads
_OFFICIAL = {
    (384, 4, 51864): "tiny.en", (384, 4, 51865): "tiny",
    (512, 6, 51864): "base.en", (512, 6, 51865): "base",
    (768, 12, 51864): "small.en", (768, 12, 51865): "small",
    (1024, 24, 51864): "medium.en", (1024, 24, 51865): "medium",
    (1280, 32, 51865): "large-v2", (1280, 32, 51866): "large-v3", (1280, 4, 51866): "large-v3-turbo",
}


def download_hint(path: str | Path) -> str:
    """How to get the file: ``download_models.sh whisper_<size>`` when the name says the size."""
    stem = Path(path).stem.lower()
    size = next((n for n in NAMES if stem in (n, f"whisper_{n}")), "small")
    return f"download it with: bash download_models.sh whisper_{size}"


def resolve_whisper_path(name_or_path: str | Path, checkpoints_dir: str | Path = "checkpoints") -> Path:
    """The checkpoint file for ``small``/``base``/``medium`` (or ``whisper_small``...) or a path."""
    text = str(name_or_path)
    name = text.lower().removeprefix("whisper_")
    if name in NAMES and not Path(text).suffix:
        return Path(checkpoints_dir).expanduser() / f"whisper_{name}.pt"
    return Path(text).expanduser()


def import_whisper() -> Any:
    """The ``whisper`` package, or an InputError saying how to install it."""
    try:
        import whisper
        import whisper.model  # noqa: F401
    except ImportError:
        raise InputError("timed lyrics need the openai-whisper package: pip install 'metamusic[lyrics]'") from None
    return whisper


def load_whisper(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Read a Whisper checkpoint weights-only; return the model ``.eval().requires_grad_(False)`` in fp32."""
    path = Path(path).expanduser()
    hint = download_hint(path)
    state = load_weights(path, WHAT, hint)
    whisper = import_whisper()
    if not isinstance(state, Mapping) or "dims" not in state or "model_state_dict" not in state:
        raise CheckpointError(f"{path}: not a {WHAT} (expected the keys 'dims' and 'model_state_dict'); {hint}")
    dims = state["dims"]
    if not isinstance(dims, Mapping) or sorted(dims) != sorted(_DIM_KEYS) or not all(
        isinstance(v, int) and v > 0 for v in dims.values()
    ):
        raise CheckpointError(f"{path}: {WHAT} has malformed 'dims' (expected positive {', '.join(_DIM_KEYS)})")
    try:
        model = whisper.model.Whisper(whisper.model.ModelDimensions(**dims))
        model.load_state_dict(state["model_state_dict"], strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: {WHAT} does not fit its own dimensions ({first})") from None
    official = _OFFICIAL.get((dims["n_audio_state"], dims["n_text_layer"], dims["n_vocab"]))
    if official is not None:
        model.set_alignment_heads(whisper._ALIGNMENT_HEADS[official])
    return model.float().to(device).eval().requires_grad_(False)
