"""models.norm.GroupNorm: torch's GroupNorm values and gradients, with its own channels-last backward."""

from __future__ import annotations

import pytest
import torch

from metamusic.models import norm
from metamusic.models.norm import GroupNorm


@pytest.fixture
def custom_backward_at_any_size(monkeypatch):
    """Small test images take the custom backward too (in use it starts at 64x64)."""
    monkeypatch.setattr(norm, "CUSTOM_BACKWARD_MIN_PIXELS", 1)


def _pair(groups: int, channels: int, seed: int = 0) -> tuple[GroupNorm, torch.nn.GroupNorm]:
    ours = GroupNorm(groups, channels, eps=1e-6)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        ours.weight.copy_(torch.rand(channels, generator=gen) + 0.5)
        ours.bias.copy_(torch.randn(channels, generator=gen))
    ref = torch.nn.GroupNorm(groups, channels, eps=1e-6).double()
    ref.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    return ours, ref


def _input(shape, dtype, channels_last: bool, seed: int = 1) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3 + 1  # off-centre groups
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2)])
def test_channels_last_values_and_all_gradients_equal_torch_in_float64(dtype, tol, custom_backward_at_any_size):
    ours, ref = _pair(4, 16)
    ours = ours.to(dtype) if dtype != torch.float32 else ours
    x = _input((2, 16, 5, 7), dtype, channels_last=True).requires_grad_(True)
    dy = _input((2, 16, 5, 7), dtype, channels_last=False, seed=2)  # any layout comes back
    y = ours(x)
    assert y.grad_fn.name() == "_ChannelsLastGroupNormBackward"  # our backward ran
    y.backward(dy)
    x64 = x.detach().double().requires_grad_(True)
    ref(x64).backward(dy.double())
    assert _relative(y.detach(), ref(x64).detach()) < tol
    assert _relative(x.grad, x64.grad) < tol
    assert _relative(ours.weight.grad, ref.weight.grad) < tol
    assert _relative(ours.bias.grad, ref.bias.grad) < tol
    assert x.grad.is_contiguous(memory_format=torch.channels_last) and x.grad.dtype == dtype


def test_float32_gradient_matches_torch_within_float_rounding_for_frozen_weights(custom_backward_at_any_size):
    ours, _ = _pair(2, 8, seed=3)
    ours.requires_grad_(False)
    torch_norm = torch.nn.GroupNorm(2, 8, eps=1e-6)
    torch_norm.load_state_dict(ours.state_dict())
    x = _input((1, 8, 6, 6), torch.float32, channels_last=True).requires_grad_(True)
    (g_ours,) = torch.autograd.grad(ours(x).pow(2).sum(), x)
    (g_torch,) = torch.autograd.grad(torch_norm(x).pow(2).sum(), x)
    torch.testing.assert_close(g_ours, g_torch, rtol=1e-5, atol=1e-6)


def test_plain_layout_and_no_grad_use_torch_itself():
    ours, _ = _pair(4, 16)
    x = _input((1, 16, 4, 4), torch.float32, channels_last=False).requires_grad_(True)
    assert ours(x).grad_fn.name() == "NativeGroupNormBackward0"
    with torch.no_grad():
        y = ours(_input((1, 16, 4, 4), torch.float32, channels_last=True))
    assert y.grad_fn is None
    frozen = GroupNorm(4, 16).requires_grad_(False)
    assert frozen(_input((1, 16, 4, 4), torch.float32, channels_last=True)).grad_fn is None


def test_custom_backward_only_from_its_minimum_image_size():
    ours, _ = _pair(4, 16)
    side = int(norm.CUSTOM_BACKWARD_MIN_PIXELS**0.5)
    small = _input((1, 16, side - 1, side), torch.bfloat16, channels_last=True).requires_grad_(True)
    assert ours.to(torch.bfloat16)(small).grad_fn.name() == "NativeGroupNormBackward0"
    large = _input((1, 16, side, side), torch.bfloat16, channels_last=True).requires_grad_(True)
    assert ours(large).grad_fn.name() == "_ChannelsLastGroupNormBackward"
