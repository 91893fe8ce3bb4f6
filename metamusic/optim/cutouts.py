"""Cut-outs of the generated image that CLIP sees, for the five methods of VQGAN-CLIP.

- ``original`` (MakeCutoutsOrig): random square crops of side ``rand**cut_pow * (max - min) + min``,
  Lanczos-resampled to the cut size, clamped to [0, 1]; no augments, no noise.
- ``updated`` / ``nrupdated`` (MakeCutoutsUpdate / MakeCutoutsNRUpdate): the same crops, then
  augments, then per-cut-out Gaussian noise.
- ``updatedpooling`` / ``latest`` (MakeCutoutsPoolingUpdate / MakeCutouts): the whole image
  pooled to the cut size ((adaptive avg + adaptive max) / 2), repeated, augmented, noised.
  The two differ only in their augment lists (see ``augments.method_augments``); ``cut_pow``
  has no effect on them.

Noise: cut-out ``i`` gets ``f_i * N(0, 1)`` with ``f_i ~ U(0, noise_fac)``. All randomness
except kornia's comes from the explicit ``generator`` (kornia's is seeded by the caller).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from metamusic.errors import InputError
from metamusic.ops import clamp_with_grad

__all__ = ["CUT_METHODS", "latest_reference", "make_cutouts", "random_crops", "resample"]

CUT_METHODS = ("original", "updated", "nrupdated", "updatedpooling", "latest")

Augment = Callable[[torch.Tensor], torch.Tensor]


def _lanczos_taps(ratio: float, a: int = 2) -> torch.Tensor:
    """Normalised Lanczos-``a`` low-pass taps every ``ratio`` pixels (ratio = out / in < 1)."""
    n = math.ceil(a / ratio + 1)
    x = torch.arange(-(n - 2), n - 1, dtype=torch.float64) * ratio  # symmetric, 2n - 3 taps
    taps = torch.where(x.abs() < a, torch.sinc(x) * torch.sinc(x / a), torch.zeros_like(x))
    return (taps / taps.sum()).float()


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Anti-aliased resize as VQGAN-CLIP's ``resample``: Lanczos-2 prefilter then bicubic.

    The prefilter runs only along axes that shrink (reflect padding); the bicubic
    interpolation uses align_corners=True. x: (N, C, H, W) -> (N, C, h, w).
    """
    n, c, h, w = x.shape
    out_h, out_w = size
    y = x.reshape(n * c, 1, h, w)  # (N*C, 1, H, W)
    if out_h < h:
        k = _lanczos_taps(out_h / h).to(y.device, y.dtype)
        pad = (k.shape[0] - 1) // 2
        y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), k[None, None, :, None])
    if out_w < w:
        k = _lanczos_taps(out_w / w).to(y.device, y.dtype)
        pad = (k.shape[0] - 1) // 2
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), k[None, None, None, :])
    y = y.reshape(n, c, h, w)
    return F.interpolate(y, size=(out_h, out_w), mode="bicubic", align_corners=True)


def random_crops(
    height: int, width: int, cut_size: int, cutn: int, cut_pow: float, generator: torch.Generator
) -> list[tuple[int, int, int]]:
    """``cutn`` random squares (top, left, side) with side = rand**cut_pow * (max - min) + min.

    max = the image's shorter side, min = min(shorter side, cut_size), as VQGAN-CLIP.
    Larger ``cut_pow`` favours small crops.
    """
    max_size = min(width, height)
    min_size = min(width, height, cut_size)
    dev = generator.device
    u = torch.rand(3, cutn, generator=generator, device=dev, dtype=torch.float64).cpu()  # (3, cutn)
    crops = []
    for i in range(cutn):
        side = int(u[0, i].item() ** cut_pow * (max_size - min_size) + min_size)
        top = int(u[1, i].item() * (height - side + 1))
        left = int(u[2, i].item() * (width - side + 1))
        crops.append((top, left, side))
    return crops


def _add_noise(
    batch: torch.Tensor, noise_fac: float, generator: torch.Generator
) -> torch.Tensor:
    """batch + f_i * N(0, 1) per cut-out with f_i ~ U(0, noise_fac). batch: (B, 3, S, S)."""
    if not noise_fac:
        return batch
    dev = generator.device
    facs = torch.rand(batch.shape[0], 1, 1, 1, generator=generator, device=dev) * noise_fac
    noise = torch.randn(batch.shape, generator=generator, device=dev)  # (B, 3, S, S)
    return batch + (facs * noise).to(batch.device, batch.dtype)


def _pooled(image: torch.Tensor, cut_size: int) -> torch.Tensor:
    """(adaptive average pool + adaptive max pool) / 2 of the whole image to cut_size."""
    size = (cut_size, cut_size)
    return (F.adaptive_avg_pool2d(image, size) + F.adaptive_max_pool2d(image, size)) / 2


def make_cutouts(
    image: torch.Tensor,
    method: str,
    cut_size: int,
    cutn: int,
    cut_pow: float = 1.0,
    augment: Augment | None = None,
    generator: torch.Generator | None = None,
    noise_fac: float = 0.1,
) -> torch.Tensor:
    """The ``cutn`` CLIP inputs of one image for a VQGAN-CLIP cut method (see module doc).

    image: (1, 3, H, W) in [0, 1] -> (cutn, 3, cut_size, cut_size). ``augment`` is applied to
    the batch for every method but ``original`` (use ``augments.apply_augments`` to seed it).
    """
    if method not in CUT_METHODS:
        raise InputError(f"unknown cut method {method!r}; valid: {' '.join(CUT_METHODS)}")
    if image.ndim != 4 or image.shape[0] != 1:
        raise InputError(f"make_cutouts expects one image (1, 3, H, W), got {tuple(image.shape)}")
    if cutn < 1:
        raise InputError(f"number of cut-outs must be >= 1, got {cutn}")
    if generator is None:
        generator = torch.Generator(device=image.device).manual_seed(0)
    _, _, height, width = image.shape

    if method in ("latest", "updatedpooling"):
        pooled = _pooled(image, cut_size)  # (1, 3, S, S), computed once
        batch = pooled.expand(cutn, -1, -1, -1)  # (cutn, 3, S, S)
    else:
        crops = random_crops(height, width, cut_size, cutn, cut_pow, generator)
        batch = torch.cat(
            [
                resample(image[:, :, t : t + s, l : l + s], (cut_size, cut_size))
                for t, l, s in crops
            ]
        )  # (cutn, 3, S, S)
        if method == "original":
            return clamp_with_grad(batch, 0.0, 1.0)

    if augment is not None:
        batch = augment(batch.contiguous())
    return _add_noise(batch, noise_fac, generator)


def latest_reference(
    image: torch.Tensor,
    cut_size: int,
    cutn: int,
    augment: Augment | None = None,
    generator: torch.Generator | None = None,
    noise_fac: float = 0.1,
) -> torch.Tensor:
    """``make_cutouts(..., "latest")`` computed the reference way: pooling once per cut-out.

    Same output for the same generator state; kept as the benchmark baseline.
    image: (1, 3, H, W) -> (cutn, 3, cut_size, cut_size).
    """
    if generator is None:
        generator = torch.Generator(device=image.device).manual_seed(0)
    batch = torch.cat([_pooled(image, cut_size) for _ in range(cutn)])  # (cutn, 3, S, S)
    if augment is not None:
        batch = augment(batch)
    return _add_noise(batch, noise_fac, generator)
