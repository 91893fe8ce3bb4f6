"""Kornia augmentations applied to the cut-outs, with VQGAN-CLIP's codes and parameters.

Codes (nerdyrodent/VQGAN-CLIP ``-aug``): Ji colour jitter, Sh sharpness, Gn Gaussian noise,
Pe perspective, Ro rotation, Af affine, Et elastic, Ts thin-plate spline, Cr crop, Er erasing,
Re resized crop. Default: Af Pe Ji Er. Kornia draws from torch's global RNG, so
:func:`apply_augments` runs it inside a forked, seeded RNG: reproducible and side-effect free.

Colour jitter: VQGAN-CLIP and Music2Video pin kornia 0.5.4, whose ``ColorJitter`` shifts
brightness additively (x + (f - 1)), scales contrast (x * f), scales the HSV saturation and
turns the hue by f * 2 pi, in a random order per call. Later kornia moved that behaviour to
``ColorJiggle`` and made ``ColorJitter`` follow torchvision's blends, so ``ColorJiggle`` is used,
as :class:`~metamusic.optim.colour.ColourJiggle`: the same draws, values and gradients, faster.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from metamusic.errors import InputError

__all__ = [
    "AUGMENT_CODES",
    "DEFAULT_AUGMENTS",
    "apply_augments",
    "build_augments",
    "method_augments",
]

AUGMENT_CODES = ("Ji", "Sh", "Gn", "Pe", "Ro", "Af", "Et", "Ts", "Cr", "Er", "Re")
DEFAULT_AUGMENTS = ("Af", "Pe", "Ji", "Er")


def _augment(code: str, cut_size: int, variant: str) -> nn.Module:
    """One kornia augmentation for ``code`` with the reference's probabilities and ranges."""
    import kornia.augmentation as K

    from metamusic.optim.colour import ColourJiggle

    nr = variant == "nrupdated"  # MakeCutoutsNRUpdate: stronger affine, milder perspective
    size = (cut_size, cut_size)
    if code == "Ji":
        return ColourJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=0.7)
    if code == "Sh":
        return K.RandomSharpness(sharpness=0.3, p=0.5)
    if code == "Gn":
        return K.RandomGaussianNoise(mean=0.0, std=1.0, p=0.5)
    if code == "Pe":
        return K.RandomPerspective(distortion_scale=0.5 if nr else 0.7, p=0.7)
    if code == "Ro":
        return K.RandomRotation(degrees=15, p=0.7)
    if code == "Af":
        return K.RandomAffine(
            degrees=30 if nr else 15,
            translate=0.1,
            shear=5,
            p=0.7,
            padding_mode="zeros",
            keepdim=True,
        )
    if code == "Et":
        return K.RandomElasticTransform(p=0.7)
    if code == "Ts":
        return K.RandomThinPlateSpline(scale=0.8, same_on_batch=True, p=0.7)
    if code == "Cr":
        return K.RandomCrop(size=size, pad_if_needed=True, padding_mode="reflect", p=0.5)
    if code == "Er":
        return K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=0.7)
    if code == "Re":
        return K.RandomResizedCrop(
            size=size, scale=(0.1, 1.0), ratio=(0.75, 1.333), cropping_mode="resample", p=0.5
        )
    raise InputError(f"unknown augment code {code!r}; valid codes: {' '.join(AUGMENT_CODES)}")


def build_augments(codes: Sequence[str], cut_size: int, variant: str = "latest") -> nn.Module:
    """The augment pipeline for ``codes`` in the given order (empty codes: identity).

    variant "latest" uses MakeCutouts' parameters, "nrupdated" MakeCutoutsNRUpdate's
    (affine 30 degrees, perspective 0.5).
    """
    if isinstance(codes, str):
        codes = codes.split()
    unknown = [c for c in codes if c not in AUGMENT_CODES]
    if unknown:
        raise InputError(
            f"unknown augment code(s) {' '.join(unknown)}; valid codes: {' '.join(AUGMENT_CODES)}"
        )
    return nn.Sequential(*(_augment(c, cut_size, variant) for c in codes))


def method_augments(method: str, codes: Sequence[str], cut_size: int) -> nn.Module | None:
    """The augment pipeline each cut method of VQGAN-CLIP uses.

    latest / nrupdated: the selectable ``codes``; updated and updatedpooling: their fixed lists
    (``codes`` ignored, as in the reference); original: none.
    """
    import kornia.augmentation as K

    from metamusic.optim.colour import ColourJiggle

    if method == "latest":
        return build_augments(codes, cut_size)
    if method == "nrupdated":
        return build_augments(codes, cut_size, variant="nrupdated")
    if method == "updated":
        return nn.Sequential(
            K.RandomHorizontalFlip(p=0.5),
            ColourJiggle(hue=0.01, saturation=0.01, p=0.7),
            K.RandomSharpness(0.3, p=0.4),
            K.RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode="border"),
            K.RandomPerspective(0.2, p=0.4),
        )
    if method == "updatedpooling":
        return nn.Sequential(
            K.RandomAffine(degrees=15, translate=0.1, p=0.7, padding_mode="border"),
            K.RandomPerspective(0.7, p=0.7),
            ColourJiggle(hue=0.1, saturation=0.1, p=0.7),
            K.RandomErasing((0.1, 0.4), (0.3, 1 / 0.3), same_on_batch=True, p=0.7),
        )
    if method == "original":
        return None
    raise InputError(
        f"unknown cut method {method!r}; valid: original updated nrupdated updatedpooling latest"
    )


def apply_augments(augment: nn.Module | None, batch: torch.Tensor, seed: int) -> torch.Tensor:
    """``augment(batch)`` with torch's RNG forked and seeded by ``seed``: same seed, same result.

    The global RNG state (CPU, and the batch's accelerator) is restored afterwards.
    batch: (B, 3, S, S) -> (B, 3, S, S).
    """
    if augment is None or (isinstance(augment, nn.Sequential) and len(augment) == 0):
        return batch
    device = batch.device
    if device.type == "cpu":
        fork = torch.random.fork_rng(devices=[])
    else:
        index = device.index if device.index is not None else 0
        fork = torch.random.fork_rng(devices=[index], device_type=device.type)
    with fork:
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        elif device.type != "cpu":
            torch.manual_seed(seed)  # other accelerators: seed them all (state is forked above)
        return augment(batch)
