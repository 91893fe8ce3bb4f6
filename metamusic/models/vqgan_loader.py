"""Read a taming-transformers VQGAN (yaml config + Lightning ``.ckpt``) into :class:`VQGAN`.

The official ``.ckpt`` files are PyTorch Lightning 1.0 checkpoints whose ``callbacks`` entry
pickles the class ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``. They are read
weights-only with an opaque stand-in for that one class, so neither Lightning nor any code from
the file is needed or run (the format of taming-transformers' released checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metamusic.errors import CheckpointError
from metamusic.models.checkpoint_io import check_model_file, load_weights
from metamusic.models.vqgan import VQGAN, VQGANConfig

LIGHTNING_CHECKPOINT_CALLBACK = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"

# Names used by the VQGAN-CLIP download_models.sh (file stems of checkpoints/<name>.{yaml,ckpt}).
KNOWN_VQGAN_MODELS = (
    "vqgan_imagenet_f16_16384",
    "vqgan_imagenet_f16_1024",
    "vqgan_gumbel_f8_8192",
    "wikiart_16384",
    "wikiart_1024",
    "coco",
    "faceshq",
    "sflckr",
)
DEFAULT_VQGAN_MODEL = "vqgan_imagenet_f16_16384"

_FIRST_STAGE = "first_stage_model."
_ZIP_MAGIC = b"PK\x03\x04"


class LightningModelCheckpointStandIn:
    """Opaque placeholder for Lightning's ``ModelCheckpoint`` class inside a ``.ckpt``.

    The checkpoint only uses that class as a dictionary key; nothing of it is ever called.
    """


def download_hint(path: str | Path) -> str:
    """How to obtain the VQGAN file ``path`` (named model when its stem is a known one)."""
    stem = Path(path).stem
    if stem in KNOWN_VQGAN_MODELS:
        return f"download it with: bash download_models.sh {stem}"
    return (
        f"download a VQGAN with: bash download_models.sh {DEFAULT_VQGAN_MODEL} "
        "(or pass the yaml/ckpt pair of a taming-transformers VQGAN with -conf/-ckpt)"
    )


def read_vqgan_config(path: str | Path) -> VQGANConfig:
    """Parse a taming VQGAN yaml (VQModel, GumbelVQ or Net2NetTransformer) without any weights."""
    path = check_model_file(path, "VQGAN config", download_hint(path))
    with path.open("rb") as f:
        if f.read(4) == _ZIP_MAGIC:
            raise CheckpointError(
                f"{path}: VQGAN config is a checkpoint archive, not a yaml file "
                "(were -conf and -ckpt swapped?)"
            )
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError, OmegaConfBaseException, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: VQGAN config is not valid yaml ({first})") from None
    try:
        return VQGANConfig.from_omegaconf(cfg)
    except (ValueError, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a taming-transformers VQGAN config ({first})") from None


def extract_vqgan_state_dict(checkpoint: Any) -> dict[str, torch.Tensor] | None:
    """First-stage weights of a loaded checkpoint: Lightning dict or plain state dict.

    Takes ``state_dict`` when present, strips ``first_stage_model.`` (Net2NetTransformer) and
    drops everything else of the transformer as well as the training-only ``loss.*`` keys (and the
    ``colorize`` buffer of segmentation models).
    Returns None when ``checkpoint`` holds no tensors keyed by name.
    """
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        return None
    if not all(isinstance(k, str) for k in checkpoint):
        return None
    keys = list(checkpoint)
    nested = any(k.startswith(_FIRST_STAGE) for k in keys) and not any(
        k.startswith("encoder.") for k in keys
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        if nested:
            if not key.startswith(_FIRST_STAGE):
                continue  # transformer.*, cond_stage_model.*, ...
            key = key[len(_FIRST_STAGE):]
        if key.startswith("loss.") or key == "colorize":
            continue  # training-only: loss networks, segmentation-visualisation buffer
        out[key] = value
    return out


def _fmt_shape(shape: Any) -> str:
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def _mismatch(state: Mapping[str, Any], expected: Mapping[str, torch.Tensor]) -> str | None:
    """One-line description of how ``state`` differs from the model's keys and shapes, or None."""
    shapes = []
    for key, ref in expected.items():
        value = state.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            shapes.append(f"{key}: checkpoint holds a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != tuple(ref.shape):
            shapes.append(f"{key}: checkpoint {_fmt_shape(value.shape)} vs config {_fmt_shape(ref.shape)}")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if not (shapes or missing or unexpected):
        return None
    example = (
        shapes[0] if shapes else f"{missing[0]} missing" if missing else f"{unexpected[0]} unexpected"
    )
    counts = [
        f"{n} {what}"
        for n, what in ((len(shapes), "shape mismatches"), (len(missing), "missing"), (len(unexpected), "unexpected"))
        if n
    ]
    return f"e.g. {example}; {', '.join(counts)}"


def load_vqgan(
    config_path: str | Path, checkpoint_path: str | Path, device: str | torch.device = "cpu"
) -> VQGAN:
    """Build the VQGAN a taming yaml describes, load its ``.ckpt`` weights; eval, frozen, on ``device``."""
    # 1. Config first: cheap, and it decides the architecture the weights must fit.
    config = read_vqgan_config(config_path)
    config_path = Path(config_path).expanduser()
    ckpt_path = Path(checkpoint_path).expanduser()

    # 2. Weights-only read with a stand-in for Lightning's callback class (no Lightning needed).
    raw = load_weights(
        ckpt_path,
        "VQGAN checkpoint",
        download_hint(ckpt_path),
        aliases=[(LightningModelCheckpointStandIn, LIGHTNING_CHECKPOINT_CALLBACK)],
        map_location="cpu",
    )
    state = extract_vqgan_state_dict(raw)
    del raw  # optimizer states of the training run are not needed
    if state is None:
        raise CheckpointError(f"{ckpt_path}: VQGAN checkpoint holds no state_dict of named tensors")

    # 3. Architecture on the meta device (no random init of ~70 M parameters), then check fit.
    with torch.device("meta"):
        model = VQGAN(config)
    problem = _mismatch(state, model.state_dict())
    if problem is not None:
        raise CheckpointError(f"{ckpt_path}: checkpoint does not match {config_path} ({problem})")
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device=device, dtype=torch.float32)
    return model.eval().requires_grad_(False)
