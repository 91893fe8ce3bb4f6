"""OpenAI CLIP as a frozen perceptor, built on open_clip's modules, and its checkpoint loader.

The architecture is inferred from the weights' shapes (as in OpenAI's ``build_model``), so no
config file is needed. Accepted files: the official OpenAI TorchScript archives (only when their
SHA-256 is a published one, or when the user opts in), plain state dicts (read weights-only) and
``.safetensors``. TorchScript archives are read with ``torch.jit.load`` for their ``state_dict()``
only; their code is never run.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from metamusic import files
from metamusic.errors import CheckpointError
from metamusic.models.checkpoint_io import check_model_file, load_weights
from metamusic.models.clip_tower import fast_vit_supported, vit_image_features

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "OPENAI_SHA256",
    "ClipArchitecture",
    "clip_download_hint",
    "token_count",
    "Perceptor",
    "available_models",
    "build_clip",
    "convert_to_safetensors",
    "infer_architecture",
    "load_clip",
    "read_clip_state_dict",
    "resolve_clip_path",
    "sha256_of",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# SHA-256 of the official OpenAI archives (it is part of their download URL).
OPENAI_SHA256: dict[str, str] = {
    "ViT-B/32": "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    "ViT-B/16": "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    "RN50": "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
}
# File stem under checkpoints_dir and the download_models.sh target of each OpenAI name.
_FILE_STEMS = {"ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "RN50": "RN50"}
_DOWNLOAD_TARGETS = {"ViT-B/32": "clip_vit_b32", "ViT-B/16": "clip_vit_b16", "RN50": "clip_rn50"}
# Keys the OpenAI archives carry besides the weights; open_clip's CLIP has no slot for them.
_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_WHAT = "CLIP checkpoint"
_TEXT_PREVIEW = 40


def available_models() -> list[str]:
    """Return the OpenAI CLIP names that ``load_clip`` resolves inside ``checkpoints_dir``."""
    return list(OPENAI_SHA256)


def _canonical_name(name: str) -> str | None:
    """Map "ViT-B/32" or "ViT-B-32" (any case) to the OpenAI name, else None."""
    for official, stem in _FILE_STEMS.items():
        if name.lower() in (official.lower(), stem.lower()):
            return official
    return None


def _download_hint(official: str | None) -> str:
    target = _DOWNLOAD_TARGETS.get(official or "ViT-B/32")
    return f"download it with: bash download_models.sh {target}"


def clip_download_hint(name_or_path: str | Path) -> str:
    """How to obtain the CLIP model asked for: ``ViT-B/16`` -> ``bash download_models.sh clip_vit_b16``."""
    official = _canonical_name(str(name_or_path))
    if official is None:
        return (f"download an OpenAI CLIP with: bash download_models.sh {_DOWNLOAD_TARGETS['ViT-B/32']} "
                "(then -m ViT-B/32), or pass an existing CLIP file with -m")
    return _download_hint(official)


def resolve_clip_path(name_or_path: str | Path, checkpoints_dir: str | Path = "checkpoints") -> Path:
    """Return the file for an OpenAI name (safetensors preferred over .pt) or the given path."""
    official = _canonical_name(str(name_or_path))
    if official is None:
        return Path(name_or_path).expanduser()
    stem = _FILE_STEMS[official]
    directory = Path(checkpoints_dir).expanduser()
    converted = directory / f"{stem}.safetensors"
    return converted if converted.is_file() else directory / f"{stem}.pt"


# --------------------------------------------------------------------------- file reading

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | Path) -> str:
    """Return the hex SHA-256 of a file, streamed; cached by (path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = files.sha256_of(path)
    return _SHA_CACHE[key]


def _is_torchscript_archive(path: Path) -> bool:
    """True when ``path`` is a zip holding TorchScript code (the test torch.load itself uses)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_torchscript(path: Path, trust_torchscript: bool) -> dict[str, Tensor]:
    """Return the state dict of a TorchScript archive whose hash is published or trusted."""
    if not trust_torchscript and sha256_of(path) not in set(OPENAI_SHA256.values()):
        raise CheckpointError(
            f"{path}: {_WHAT} is a TorchScript archive whose SHA-256 is not a published OpenAI one; "
            "pass --trust_torchscript if you trust its source (python -m metamusic.convert PATH "
            "--trust_torchscript then makes a weights-only .safetensors copy)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means an unreadable archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: {_WHAT} TorchScript archive is corrupt ({first})") from None
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """Return the tensors of a .safetensors file (format is weights-only by design)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: {_WHAT} is not a valid safetensors file ({first})") from None


def _as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """Unwrap a loaded pickle into a flat {name: tensor} dict (also training checkpoints)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: {_WHAT} does not hold a state dict (found {type(obj).__name__})")
    state = {}
    for key, value in obj.items():
        if isinstance(value, Tensor):
            name = str(key)
            state[name[len("module."):] if name.startswith("module.") else name] = value
    if not state:
        raise CheckpointError(f"{path}: {_WHAT} holds no tensors")
    return state


def read_clip_state_dict(
    name_or_path: str | Path,
    *,
    checkpoints_dir: str | Path = "checkpoints",
    trust_torchscript: bool = False,
) -> tuple[dict[str, Tensor], Path]:
    """Read a CLIP state dict from an OpenAI name or a file, refusing untrusted TorchScript."""
    official = _canonical_name(str(name_or_path))
    path = resolve_clip_path(name_or_path, checkpoints_dir)
    hint = (
        _download_hint(official)
        if official is not None
        else f"pass an OpenAI name ({', '.join(available_models())}) or a CLIP checkpoint file; "
        + _download_hint(None)
    )
    path = check_model_file(path, _WHAT, hint)
    if path.suffix.lower() == ".safetensors":
        return _as_state_dict(_read_safetensors(path), path), path
    if _is_torchscript_archive(path):
        return _read_torchscript(path, trust_torchscript), path
    return _as_state_dict(load_weights(path, _WHAT, hint), path), path


# --------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class ClipArchitecture:
    """Hyper-parameters of an OpenAI-layout CLIP, as read from its weights' shapes."""

    embed_dim: int
    image_size: int
    vision_layers: int | tuple[int, int, int, int]  # int: ViT blocks; tuple: ResNet stage depths
    vision_width: int
    vision_patch_size: int | None  # None for ModifiedResNet
    vision_mlp_ratio: float
    context_length: int
    vocab_size: int
    text_width: int
    text_heads: int
    text_layers: int
    text_mlp_ratio: float

    @property
    def is_vit(self) -> bool:
        return self.vision_patch_size is not None


def _block_indices(state: Mapping[str, Tensor], prefix: str) -> set[int]:
    """Indices N of keys ``prefix.N.*``."""
    found = set()
    for key in state:
        if key.startswith(prefix + "."):
            head = key[len(prefix) + 1:].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return found


def _grid_side(state: Mapping[str, Tensor], key: str) -> int:
    """Side of the square token grid of positional embedding ``key`` (class token + grid**2)."""
    n = int(state[key].shape[0])
    grid = round(math.sqrt(n - 1)) if n > 1 else 0
    if grid < 1 or grid * grid + 1 != n:
        raise ValueError(f"{key} has {n} positions, not a square grid plus a class token")
    return grid


def infer_architecture(state: Mapping[str, Tensor]) -> ClipArchitecture:
    """Infer a CLIP's hyper-parameters from OpenAI-layout weights (as OpenAI's build_model does).

    Raises KeyError or ValueError when the weights are not a CLIP of that layout.
    """
    embed_dim = int(state["text_projection"].shape[1])
    layers: int | tuple[int, ...]
    if "visual.proj" in state:  # Vision Transformer
        conv = state["visual.conv1.weight"]  # (width, 3, patch, patch)
        width, patch = int(conv.shape[0]), int(conv.shape[-1])
        image_size = patch * _grid_side(state, "visual.positional_embedding")
        layers = len(_block_indices(state, "visual.transformer.resblocks"))
        if layers < 1:
            raise KeyError("visual.transformer.resblocks.0.attn.in_proj_weight")
        if width % 64:
            raise ValueError(f"vision width {width} is not a multiple of the 64-wide heads")
        mlp_ratio = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width
    else:  # ModifiedResNet
        layers = tuple(len(_block_indices(state, f"visual.layer{i}")) for i in (1, 2, 3, 4))
        if min(layers) < 1:
            raise KeyError("visual.proj (ViT) or visual.layer1.0.conv1.weight (ResNet)")
        width = int(state["visual.layer1.0.conv1.weight"].shape[0])
        patch = None
        image_size = 32 * _grid_side(state, "visual.attnpool.positional_embedding")  # 32x reduction
        mlp_ratio = 4.0
        out_dim = int(state["visual.attnpool.c_proj.weight"].shape[0])
        if out_dim != embed_dim:
            raise ValueError(f"image output dim {out_dim} differs from text embed dim {embed_dim}")
    text_width = int(state["ln_final.weight"].shape[0])
    text_layers = len(_block_indices(state, "transformer.resblocks"))
    if text_layers < 1:
        raise KeyError("transformer.resblocks.0.attn.in_proj_weight")
    if text_width % 64:
        raise ValueError(f"text width {text_width} is not a multiple of the 64-wide attention heads")
    return ClipArchitecture(
        embed_dim=embed_dim,
        image_size=int(image_size),
        vision_layers=layers,
        vision_width=width,
        vision_patch_size=patch,
        vision_mlp_ratio=float(mlp_ratio),
        context_length=int(state["positional_embedding"].shape[0]),
        vocab_size=int(state["token_embedding.weight"].shape[0]),
        text_width=text_width,
        text_heads=text_width // 64,
        text_layers=text_layers,
        text_mlp_ratio=float(state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width),
    )


def build_clip(arch: ClipArchitecture, quick_gelu: bool = True) -> torch.nn.Module:
    """Build an (untrained) open_clip CLIP with the given architecture, leaving the global RNG as it was."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(
        layers=arch.vision_layers,
        width=arch.vision_width,
        patch_size=arch.vision_patch_size if arch.is_vit else 16,
        image_size=arch.image_size,
        mlp_ratio=arch.vision_mlp_ratio,
    )
    text = CLIPTextCfg(
        context_length=arch.context_length,
        vocab_size=arch.vocab_size,
        width=arch.text_width,
        heads=arch.text_heads,
        layers=arch.text_layers,
        mlp_ratio=arch.text_mlp_ratio,
    )
    with torch.random.fork_rng(devices=[]):  # initial values are overwritten anyway
        return CLIP(arch.embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=quick_gelu)


def _load_strict(model: torch.nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Load ``state`` into ``model`` strictly; mismatches become one-line CheckpointErrors."""
    state = {k: v for k, v in state.items() if k not in _EXTRA_KEYS}
    expected = model.state_dict()
    # open_clip keeps the causal mask as a buffer (non-persistent in 3.3.0): it is not a weight.
    if "attn_mask" not in expected:
        state.pop("attn_mask", None)
    elif "attn_mask" not in state:
        state["attn_mask"] = expected["attn_mask"]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) e.g. {', '.join(unexpected[:3])}")
        raise CheckpointError(f"{path}: {_WHAT} does not match the inferred CLIP ({'; '.join(parts)})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: {_WHAT} has {key} of shape {tuple(value.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- perceptor


@lru_cache(maxsize=1)
def _bpe_tokenizer():
    """open_clip's BPE tokenizer (vocabulary file ships in the wheel: no download)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def token_count(text: str) -> int:
    """Length of ``text`` in CLIP's BPE tokens, start and end tokens included (CLIP reads 77)."""
    return len(_bpe_tokenizer().encode(text)) + 2


@dataclass
class Perceptor:
    """A frozen fp32 CLIP with its input size, normalisation constants and tokenizer."""

    model: torch.nn.Module  # open_clip.model.CLIP, eval, requires_grad False
    input_resolution: int
    embed_dim: int
    mean: Tensor  # (3,)
    std: Tensor  # (3,)
    name: str
    context_length: int
    _warned: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def normalize(self, x: Tensor) -> Tensor:
        """Apply CLIP's per-channel normalisation to images in [0, 1]; (B, 3, H, W) -> same."""
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def encode_image(self, x: Tensor) -> Tensor:
        """Embed normalised images (B, 3, R, R) -> (B, D); not unit-normalised."""
        r = self.input_resolution
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (r, r):
            raise ValueError(
                f"CLIP {self.name} expects images of shape (B, 3, {r}, {r}), got {tuple(x.shape)}"
            )
        return self.model.encode_image(x)  # (B, D)

    def encode_image_fast(self, x: Tensor) -> Tensor:
        """:meth:`encode_image` through :func:`vit_image_features` when the tower allows it.

        Same values up to float rounding; falls back to :meth:`encode_image` for other towers.
        """
        visual = getattr(self.model, "visual", None)
        if visual is None or not fast_vit_supported(visual):
            return self.encode_image(x)
        r = self.input_resolution
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (r, r):
            raise ValueError(
                f"CLIP {self.name} expects images of shape (B, 3, {r}, {r}), got {tuple(x.shape)}"
            )
        return vit_image_features(visual, x)  # (B, D)

    def tokenize(self, texts: list[str] | str) -> Tensor:
        """BPE-tokenise texts to (N, context_length) ids, truncating over-long ones with a warning."""
        if isinstance(texts, str):
            texts = [texts]
        tokenizer = _bpe_tokenizer()
        sot, eot = tokenizer.sot_token_id, tokenizer.eot_token_id
        tokens = torch.zeros(len(texts), self.context_length, dtype=torch.long)  # (N, L)
        for i, text in enumerate(texts):
            ids = [sot, *tokenizer.encode(text), eot]
            if len(ids) > self.context_length:
                if text not in self._warned:
                    self._warned.add(text)
                    warnings.warn(
                        f"text {text[:_TEXT_PREVIEW]!r} is {len(ids)} tokens long; CLIP reads only "
                        f"the first {self.context_length}, the rest is ignored",
                        stacklevel=2,
                    )
                ids = ids[: self.context_length - 1] + [eot]
            tokens[i, : len(ids)] = torch.tensor(ids)
        return tokens

    def encode_text(self, texts: list[str] | str) -> Tensor:
        """Embed texts -> (N, D); not unit-normalised."""
        return self.model.encode_text(self.tokenize(texts).to(self.device))  # (N, D)


# --------------------------------------------------------------------------- public loaders


def load_clip(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    *,
    checkpoints_dir: str | Path = "checkpoints",
    trust_torchscript: bool = False,
    quick_gelu: bool | None = None,
) -> Perceptor:
    """Load a CLIP checkpoint (OpenAI name or file) into a frozen fp32 Perceptor on ``device``.

    ``quick_gelu`` defaults to True: OpenAI weights (also once converted) were trained with it.
    """
    state, path = read_clip_state_dict(
        name_or_path, checkpoints_dir=checkpoints_dir, trust_torchscript=trust_torchscript
    )
    try:
        arch = infer_architecture(state)
    except KeyError as exc:
        raise CheckpointError(
            f"{path}: {_WHAT} is not an OpenAI-layout CLIP (no key {exc.args[0]})"
        ) from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: {_WHAT} has an unsupported layout ({exc})") from None
    model = build_clip(arch, quick_gelu=True if quick_gelu is None else quick_gelu)
    _load_strict(model, state, path)
    model = model.float().eval().requires_grad_(False).to(device)
    device = torch.device(device)
    return Perceptor(
        model=model,
        input_resolution=arch.image_size,
        embed_dim=arch.embed_dim,
        mean=torch.tensor(CLIP_MEAN, device=device),
        std=torch.tensor(CLIP_STD, device=device),
        name=str(name_or_path),
        context_length=arch.context_length,
    )


def convert_to_safetensors(src: str | Path, dst: str | Path, trust_torchscript: bool = False) -> Path:
    """Convert an accepted CLIP archive or state dict to .safetensors once (atomic write)."""
    from safetensors.torch import save_file

    state, path = read_clip_state_dict(src, trust_torchscript=trust_torchscript)
    try:
        infer_architecture(state)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: {_WHAT} is not an OpenAI-layout CLIP ({exc})") from None
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items() if k != "attn_mask"}
    dst = Path(dst).expanduser()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt", "source": path.name})
        files.replace_durably(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst
