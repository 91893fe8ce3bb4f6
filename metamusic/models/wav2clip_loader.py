"""Load the Wav2CLIP release file ``Wav2CLIP.pt`` (a flat dict of tensors) into a model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from metamusic.errors import CheckpointError
from metamusic.models.checkpoint_io import load_weights
from metamusic.models.wav2clip import Wav2CLIP

WHAT = "Wav2CLIP checkpoint"
HINT = "download it with: bash download_models.sh wav2clip"
PREFIXES = ("audio_encoder.", "audio_transform.")


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_wav2clip_state(
    state: object, path: Path, model: Wav2CLIP
) -> dict[str, torch.Tensor]:
    """Return the ``audio_encoder.*`` / ``audio_transform.*`` entries, checked against ``model``.

    Keys with other prefixes (the release may carry training-only parts) are ignored, as the
    original loader does.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{path}: not a {WHAT} (expected a dict of tensors, found "
            f"{type(state).__name__}); {HINT}"
        )
    expected = model.state_dict()
    found = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith(PREFIXES)}
    missing = [k for k in expected if k not in found]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{path}: not a {WHAT}: key {missing[0]} is missing{more}; {HINT}")
    unexpected = [k for k in found if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"{path}: not a {WHAT} for this architecture: unexpected key {unexpected[0]}"
        )
    for key, ref in expected.items():
        value = found[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: {WHAT} entry {key} is a {type(value).__name__}, not a tensor"
            )
        if value.shape != ref.shape:
            raise CheckpointError(
                f"{path}: {WHAT} key {key} has shape {_shape(value)}, expected {_shape(ref)}"
            )
    return found


def load_wav2clip(path: str | Path, device: str | torch.device = "cpu") -> Wav2CLIP:
    """Read ``Wav2CLIP.pt`` weights-only; return the model, ``.eval().requires_grad_(False)``."""
    path = Path(path).expanduser()
    state = load_weights(path, WHAT, HINT)
    model = Wav2CLIP()
    weights = check_wav2clip_state(state, path, model)
    for name in ("audio_encoder", "audio_transform"):
        prefix = name + "."
        part = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        getattr(model, name).load_state_dict(part, strict=True)
    return model.to(device).eval().requires_grad_(False)
