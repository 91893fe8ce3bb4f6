"""Choosing the compute device from the user's flags, and sizes that suit it."""

from __future__ import annotations

import torch

from metamusic.errors import InputError


def resolve_device(gpu_id: str | None = None, cuda_device: str | None = None) -> torch.device:
    """Device from ``-gid N|cpu`` (Music2Video) or ``-cd cuda:N`` (VQGAN-CLIP); default: GPU 0 or CPU.

    Unlike the original, ``-gid`` does not set CUDA_VISIBLE_DEVICES: it selects that GPU.
    A GPU that does not exist is an InputError, never a deep CUDA assert.
    """
    if gpu_id is not None:
        gid = str(gpu_id).strip().lower()
        if gid in ("cpu", "-1"):
            return torch.device("cpu")
        if gid == "mps":
            return _checked(torch.device("mps"), "-gid")
        if not gid.isdigit():
            raise InputError(f"-gid {gpu_id}: expected a GPU index (0, 1, ...) or 'cpu'")
        return _checked(torch.device("cuda", int(gid)), "-gid")
    if cuda_device is not None:
        try:
            dev = torch.device(cuda_device)
        except RuntimeError:
            raise InputError(f"-cd {cuda_device}: not a device name (e.g. cuda:0, cpu)") from None
        return _checked(dev, "-cd")
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def _checked(dev: torch.device, flag: str) -> torch.device:
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if dev.index is None else dev.index
        if index >= count:
            have = f"{count} GPU(s) visible" if count else "no CUDA GPU is visible"
            raise InputError(f"{flag} {index}: GPU {index} does not exist ({have}); use -gid cpu")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InputError(f"{flag} mps: Apple MPS is not available on this machine")
    return dev


def default_size(device: torch.device) -> tuple[int, int]:
    """Image size users know from VQGAN-CLIP: 512 on a large GPU, smaller on small ones, 256 on CPU."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        if total >= 15:
            return (512, 512)
        if total >= 8:
            return (384, 384)
    return (256, 256)


def check_device(name: str) -> torch.device:
    """The device a configuration names (e.g. a resumed run folder's), InputError if it is not here."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r}: not a device name (e.g. cuda:0, cpu)") from None
    return _checked(dev, "-gid")
