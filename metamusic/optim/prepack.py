"""Frozen bf16 convolutions with their weights reordered once for oneDNN (CPU).

A plain ``F.conv2d`` on CPU reorders the weight into oneDNN's blocked layout on every call, and
its input-gradient does so again for the transposed kernel. For the small images at the bottom
of the VQGAN decoder (16x16 and 32x32, up to 512 channels) that reordering is a large share of
the work: a 512-channel 3x3 bf16 conv at 16x16 took 1.14 ms, 0.58 ms with the weight reordered
once; its input-gradient 1.33 ms against 0.58 ms (2 cores, AMX). From 64x64 up the two are
equal or the reordered one slower, so larger inputs keep the plain call.

:class:`PrepackedConv2d` is an ``nn.Conv2d`` (same parameters and state-dict keys) that does
this for a frozen bf16 weight, forward and input-gradient, through oneDNN's ``mkldnn``
pointwise operators (the ones torch.compile's CPU backend uses); every other call is
``nn.Conv2d``'s own. :func:`prepack_convolutions` swaps it into a copy of a model
(``speed.low_precision_twin``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["PREPACK_MAX_SIZE", "PrepackedConv2d", "prepack_convolutions", "prepacking_available"]

# Largest input side (pixels) that uses the reordered weights; measured faster at 16 and 32.
PREPACK_MAX_SIZE = 32


def prepacking_available() -> bool:
    """Whether this torch build has oneDNN and the pointwise convolution operators used here."""
    if not torch.backends.mkldnn.is_available():
        return False
    ops = torch.ops.mkldnn
    names = (
        "_convolution_pointwise",
        "_convolution_transpose_pointwise",
        "_reorder_convolution_weight",
        "_reorder_convolution_transpose_weight",
    )
    try:
        return all(getattr(ops, name) is not None for name in names)
    except (AttributeError, RuntimeError):
        return False


def _geometry(conv: nn.Conv2d) -> tuple[list[int], list[int], list[int]]:
    """padding, stride and dilation of ``conv`` as the oneDNN operators take them."""
    return list(conv.padding), list(conv.stride), list(conv.dilation)  # type: ignore[arg-type]


def _convolve(x: torch.Tensor, packed: Any, conv: PrepackedConv2d) -> torch.Tensor:
    """``conv(x)`` with the forward reordered weight ``packed``."""
    padding, stride, dilation = _geometry(conv)
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed, conv.bias, padding, stride, dilation, conv.groups, "none", [], ""
    )


class _PrepackedConvFunction(torch.autograd.Function):
    """conv2d with reordered weights; the backward gives the input's gradient only (frozen weight)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, packs: tuple[Any, Any], conv: PrepackedConv2d) -> torch.Tensor:
        ctx.packs, ctx.conv = packs, conv
        return _convolve(x, packs[0], conv)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        conv = ctx.conv
        padding, stride, dilation = _geometry(conv)
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = torch.ops.mkldnn._convolution_transpose_pointwise(
            grad, ctx.packs[1], None, padding, [0, 0], stride, dilation, conv.groups, "none", [], ""
        )
        return grad_x, None, None


class PrepackedConv2d(nn.Conv2d):
    """nn.Conv2d whose frozen bf16 weight is reordered for oneDNN once per input shape (CPU).

    Used for bf16 inputs of at most :data:`PREPACK_MAX_SIZE` pixels a side, with a weight that
    does not require grad, stride 1 and zero padding; the reordered weights (forward and
    transposed, for the input's gradient) are kept while the weight and the input shape stay the
    same. Same values as ``nn.Conv2d``: oneDNN runs the same kernels on them.
    """

    _packs: tuple[tuple[Any, ...], tuple[Any, Any]] | None = None

    def _eligible(self, x: torch.Tensor) -> bool:
        w = self.weight
        return (
            x.device.type == "cpu"
            and x.dim() == 4
            and x.dtype == w.dtype == torch.bfloat16
            and (self.bias is None or self.bias.dtype == w.dtype)
            and not w.requires_grad
            and not (self.bias is not None and self.bias.requires_grad)
            and max(x.shape[-2:]) <= PREPACK_MAX_SIZE
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and all(s == 1 for s in self.stride)
        )

    def _packed(self, x: torch.Tensor) -> tuple[Any, Any]:
        """(forward, transposed) reordered weights for inputs shaped like ``x`` (made once)."""
        w = self.weight
        key = (tuple(x.shape), w.data_ptr(), w._version)
        if self._packs is None or self._packs[0] != key:
            padding, stride, dilation = _geometry(self)
            ops = torch.ops.mkldnn
            forward = ops._reorder_convolution_weight(w.detach(), padding, stride, dilation, self.groups, list(x.shape))
            # Stride 1: each side shrinks by the kernel's dilated reach beyond the padding.
            out_shape = [x.shape[0], w.shape[0]] + [
                size + 2 * pad - dil * (k - 1) for size, pad, dil, k in zip(x.shape[2:], padding, dilation, w.shape[2:])
            ]
            transposed = ops._reorder_convolution_transpose_weight(
                w.detach(), padding, [0, 0], stride, dilation, self.groups, out_shape
            )
            self._packs = (key, (forward, transposed))
        return self._packs[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H', W')
        if not self._eligible(x):
            return super().forward(x)
        x = x.contiguous(memory_format=torch.channels_last)
        packs = self._packed(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _PrepackedConvFunction.apply(x, packs, self)
        return _convolve(x, packs[0], self)


def prepack_convolutions(module: nn.Module) -> int:
    """Turn, in place, every convolution inside ``module`` that computes a plain ``nn.Conv2d``
    into a :class:`PrepackedConv2d`; returns how many. Those are ``nn.Conv2d`` itself and the
    decoder's ``Conv3x3`` (whose Winograd path is float32-only), recognised, as
    ``speed.winograd_convolutions`` does, by its ``winograd`` flag. Meant for a private copy of a
    frozen model (``speed.low_precision_twin``). A no-op (0) when the torch build lacks the
    operators (:func:`prepacking_available`)."""
    if not prepacking_available():
        return 0
    count = 0
    for child in module.modules():
        if type(child) is nn.Conv2d or (isinstance(child, nn.Conv2d) and hasattr(child, "winograd")):
            child.__class__ = PrepackedConv2d  # same parameters and buffers; the class adds no state
            count += 1
    return count
