"""3x3 convolutions by Winograd's minimal filtering, F(4x4, 3x3), for float32 forward passes.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016, arXiv 1509.09308):
each 6x6 input tile and each 3x3 filter are transformed so that a 4x4 output tile needs 36
multiplications per channel pair instead of 144; the sum over input channels becomes 36 matrix
products. On CPU this runs the float32 value pass of the low VQGAN decoder levels about 1.6x
faster than oneDNN's direct convolution at 64x64 (256 channels), at a relative error of ~1e-5
(direct float32: ~1e-6; bf16: ~1e-2). The matrices below are the paper's, with the
interpolation points 0, 1, -1, 2, -2 and infinity. No gradient: use it under ``torch.no_grad``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["winograd_conv3x3", "winograd_helps"]

_B_T = (
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)  # input transform B^T (6x6)
_G = (
    (1 / 4, 0, 0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0, 0, 1),
)  # filter transform G (6x3)
_A_T = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0),
    (0, 1, -1, 8, -8, 1),
)  # output transform A^T (4x6)

# Measured on a 2-core AVX512 CPU: faster than the direct convolution from 32x32 images with
# 256 channels up; at 16x16 the 36 products are too small to keep the cores busy.
_MIN_SIDE = 32


@functools.lru_cache(maxsize=8)
def _transforms(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2-D transforms as Kronecker products: input (36, 36), filter (36, 9), output (16, 36)."""

    def kron(rows: tuple[tuple[float, ...], ...]) -> torch.Tensor:
        m = torch.tensor(rows, dtype=torch.float64)
        return torch.kron(m, m).to(device=device, dtype=torch.float32).contiguous()

    return kron(_B_T), kron(_G), kron(_A_T)


def winograd_helps(x: torch.Tensor, conv: torch.nn.Conv2d) -> bool:
    """Whether :func:`winograd_conv3x3` applies to ``conv(x)`` and is expected to be faster."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and min(x.shape[-2:]) >= _MIN_SIDE
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not torch.is_grad_enabled()
    )


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for a 3x3 stride-1 kernel, computed by F(4x4, 3x3).

    x: (N, C, H, W) float32, weight: (K, C, 3, 3), bias: (K,) or None -> (N, K, H, W), contiguous
    in the input's layout (channels-last or NCHW).
    """
    n, c, h, w = x.shape
    k = weight.shape[0]
    to_input, to_filter, to_output = _transforms(x.device)
    th, tw = -(-h // 4), -(-w // 4)  # 4x4 output tiles per column and row
    # Zero-pad by the conv's 1 pixel plus enough to fill the last tiles; the 6x6 input tiles
    # overlap by 2 pixels (stride 4).
    xp = F.pad(x, (1, 1 + 4 * tw - w, 1, 1 + 4 * th - h))
    tiles = xp.unfold(2, 6, 4).unfold(3, 6, 4)  # (N, C, th, tw, 6, 6), a view
    tiles = tiles.permute(4, 5, 1, 0, 2, 3).reshape(36, c * n * th * tw)  # one copy
    v = (to_input @ tiles).view(36, c, n * th * tw)  # transformed tiles
    # Transformed filters, made on every call (~0.8 ms at 256 channels): cached they would hold
    # 4x the float32 weights (~100 MB for f16_16384's levels from 32x32 up) for ~1% of a step.
    u = (to_filter @ weight.reshape(k * c, 9).t()).view(36, k, c)
    m = torch.bmm(u, v)  # (36, K, tiles): the sum over input channels
    y = (to_output @ m.view(36, k * n * th * tw)).view(4, 4, k, n, th, tw)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # Keep the caller's channels-last layout (the next convolutions are fastest in it).
        out = y.permute(3, 4, 0, 5, 1, 2).reshape(n, 4 * th, 4 * tw, k).permute(0, 3, 1, 2)
        layout = torch.channels_last
    else:
        out = y.permute(3, 2, 4, 0, 5, 1).reshape(n, k, 4 * th, 4 * tw)  # one copy
        layout = torch.contiguous_format
    if 4 * th != h or 4 * tw != w:
        out = out[:, :, :h, :w].contiguous(memory_format=layout)
    if bias is not None:
        out += bias.view(1, k, 1, 1)
    return out
