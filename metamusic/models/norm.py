"""GroupNorm whose backward is fast for channels-last tensors on CPU.

The VQGAN decoder runs channels-last in bf16 on CPU, because oneDNN's bf16 convolutions are
several times faster in that layout (AMX). torch's own GroupNorm backward for channels-last
input is slow there: forward + backward of a (1, 128, 256, 256) bf16 tensor measured 49.5 ms
against 6.9 ms for the same tensor in NCHW on a 2-core AVX512-BF16 CPU. :class:`GroupNorm`
keeps torch's forward (fast in both layouts) and computes the backward from per-channel sums,
which are two matrix products and two fused multiply-adds over the tensor (10.8 ms, same
gradient up to float rounding).
"""

from __future__ import annotations

import torch
from torch import nn


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """View of a channels-last (N, C, H, W) tensor as (N, H*W, C), no copy."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


class _ChannelsLastGroupNorm(torch.autograd.Function):
    """torch.native_group_norm forward; backward from per-channel sums of dy and dy * x."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps):
        n, c, h, w = x.shape
        y, mean, rstd = torch.native_group_norm(x, weight, bias, n, c, h * w, groups, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.groups = groups
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        n, c, h, w = x.shape
        groups = ctx.groups
        per = c // groups  # channels per group
        xs = _tokens(x)  # (N, L, C)
        dys = _tokens(dy.contiguous(memory_format=torch.channels_last))  # (N, L, C)
        sum_dy = torch.bmm(xs.new_ones(n, 1, h * w), dys).view(n, groups, per).float()  # (N, G, C/G)
        # Per-channel sums of dy * x: the diagonal of dy^T x, one matrix product (no temporary
        # the size of x; a (C, C) product costs about as much as the elementwise pass here).
        sum_dy_x = torch.bmm(dys.transpose(1, 2), xs).diagonal(dim1=1, dim2=2).view(n, groups, per).float()
        # d(x_hat) = dy * weight; dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
        # over each group, which is a * dy + b * x + d with per-channel a and per-group b, d.
        # Group quantities are (N, G, 1) and broadcast over the group's channels (no copies).
        mean, rstd = mean.float().view(n, groups, 1), rstd.float().view(n, groups, 1)
        wf = weight.float().view(1, groups, per) if weight is not None else sum_dy.new_ones(1, groups, per)
        count = h * w * per
        centred = sum_dy_x - mean * sum_dy  # (N, G, C/G): sum of dy * (x - mean)
        m1 = (sum_dy * wf).sum(-1, keepdim=True) / count  # (N, G, 1)
        m2 = (centred * wf).sum(-1, keepdim=True) * rstd / count  # (N, G, 1)
        b = -rstd * rstd * m2
        d = -b * mean - rstd * m1
        # a, b, d per channel, converted to x's dtype together: (3, N, 1, C)
        coeffs = torch.stack([(rstd * wf).expand(n, groups, per), b.expand(n, groups, per), d.expand(n, groups, per)])
        a, b, d = coeffs.view(3, n, 1, c).to(x.dtype).unbind(0)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.addcmul(d, dys, a).addcmul_(xs, b).view(n, h, w, c).permute(0, 3, 1, 2)
        if weight is not None and ctx.needs_input_grad[1]:
            dw = (centred * rstd).sum(0).view(c).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            db = sum_dy.sum(0).view(c).to(weight.dtype if weight is not None else x.dtype)
        return dx, dw, db, None, None


def group_norm_channels_last(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """F.group_norm of a channels-last (N, C, H, W) tensor with the fast backward above."""
    return _ChannelsLastGroupNorm.apply(x, weight, bias, groups, eps)


def _is_channels_last(x: torch.Tensor) -> bool:
    """A 4-d tensor laid out channels-last (and not also plain contiguous, e.g. 1x1 images)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


# Fewest pixels per image for which the backward above beats torch's: its two matrix products
# and Python bookkeeping cost ~0.5 ms a call. bf16 forward + backward on 2 cores: 512 channels
# at 16x16 0.79 ms ours vs 0.19 ms torch's; 256 at 32x32 1.05 vs 0.89; 256 at 64x64 2.58 vs 3.29.
CUSTOM_BACKWARD_MIN_PIXELS = 64 * 64


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters and state-dict keys) with the fast channels-last backward
    on CPU when a gradient is needed on images of at least ``CUSTOM_BACKWARD_MIN_PIXELS``;
    everything else is torch's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = x.dim() == 4 and x.shape[-2] * x.shape[-1] >= CUSTOM_BACKWARD_MIN_PIXELS
        if big and x.device.type == "cpu" and torch.is_grad_enabled() and _is_channels_last(x) and (
            x.requires_grad or (self.weight is not None and self.weight.requires_grad)
        ):
            return group_norm_channels_last(x, self.num_groups, self.weight, self.bias, self.eps)
        return super().forward(x)
