"""Small differentiable operations of the VQGAN-CLIP method, as pure functions of tensors.

These follow the VQGAN-CLIP notebook (Crowson, 2021; arXiv 2204.08583) as packaged in
nerdyrodent/VQGAN-CLIP generate.py (``ReplaceGrad``, ``ClampWithGrad``, ``vector_quantize``,
``spherical_dist_loss``), which Music2Video builds on. Every function here is side-effect free
and device-agnostic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _ReplaceGrad(torch.autograd.Function):
    """Forward ``x_forward``; send the incoming gradient to ``x_backward`` unchanged."""

    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        # A detached alias, not the input itself: autograd would wrap the input in a view whose
        # size-1 dims get new strides, and a (1, C, H, W) channels-last tensor so restrided is
        # no longer recognised as channels-last by GroupNorm (which then writes NCHW, and every
        # following convolution converts layouts).
        return x_forward.detach()

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


def replace_grad(x_forward: torch.Tensor, x_backward: torch.Tensor) -> torch.Tensor:
    """Value of ``x_forward`` with the gradient of ``x_backward`` (straight-through estimator)."""
    return _ReplaceGrad.apply(x_forward, x_backward)


class _ClampWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad_in):
        (x,) = ctx.saved_tensors
        # Pass the gradient where it pushes x back into [lo, hi], or where x is already inside.
        keep = (grad_in * (x - x.clamp(ctx.lo, ctx.hi)) >= 0).to(grad_in.dtype)
        return grad_in * keep, None, None


def clamp_with_grad(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Clamp ``x`` to [lo, hi]; the gradient passes only where it moves x toward the range."""
    return _ClampWithGrad.apply(x, lo, hi)


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook vector (squared L2) for each position of ``z``.

    z: (B, C, H, W), codebook: (K, C) -> indices (B, H, W).
    """
    b, c, h, w = z.shape
    flat = z.movedim(1, 3).reshape(-1, c)  # (B*H*W, C)
    cb = codebook.to(flat.dtype)
    # |x|^2 + |c|^2 - 2 x.c without the per-row constant |x|^2 (same argmin), one fused addmm.
    d = torch.addmm(cb.pow(2).sum(1), flat, cb.T, alpha=-2)  # (B*H*W, K)
    return d.argmin(1).view(b, h, w)


def vector_quantize(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Replace each position of ``z`` by its nearest code, with a straight-through gradient.

    z: (B, C, H, W), codebook: (K, C) -> (B, C, H, W).
    """
    idx = nearest_codes(z, codebook)  # (B, H, W)
    z_q = F.embedding(idx, codebook.to(z.dtype)).movedim(3, 1)  # (B, C, H, W)
    return replace_grad(z_q, z)


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance ``2 * arcsin(|a - b| / 2)^2`` between unit-normalised rows."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    return (a - b).norm(dim=-1).div(2).arcsin().pow(2).mul(2)
