"""The optimisers VQGAN-CLIP offers for the latent (``-opt``), built as its ``get_opt`` does."""

from __future__ import annotations

from typing import Iterable

import torch

from metamusic.errors import InputError

__all__ = ["OPTIMISERS", "build_optimiser", "canonical_optimiser"]

OPTIMISERS = ("Adam", "AdamW", "Adagrad", "Adamax", "DiffGrad", "AdamP", "RAdam", "RMSprop")


def canonical_optimiser(name: str) -> str:
    """The canonical spelling of an optimiser name (case-insensitive), or InputError."""
    for known in OPTIMISERS:
        if name.lower() == known.lower():
            return known
    raise InputError(f"unknown optimiser {name!r}; valid: {' '.join(OPTIMISERS)}")


def build_optimiser(
    name: str, params: Iterable[torch.Tensor], lr: float
) -> torch.optim.Optimizer:
    """A fresh optimiser over ``params`` with VQGAN-CLIP's arguments (only lr set, except DiffGrad).

    DiffGrad and AdamP come from torch_optimizer; DiffGrad uses eps=1e-9, weight_decay=1e-9 as
    the reference. RAdam is torch.optim's (the reference imported torch_optimizer's, whose
    update rule is the same; torch_optimizer deprecates it).
    """
    name = canonical_optimiser(name)
    if not lr > 0:
        raise InputError(f"learning rate must be > 0, got {lr}")
    params = list(params)
    if name in ("DiffGrad", "AdamP"):
        import torch_optimizer

        if name == "DiffGrad":
            return torch_optimizer.DiffGrad(params, lr=lr, eps=1e-9, weight_decay=1e-9)
        return torch_optimizer.AdamP(params, lr=lr)
    return getattr(torch.optim, name)(params, lr=lr)
