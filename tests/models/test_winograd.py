"""Winograd F(4x4, 3x3) convolutions: same values as the direct convolution, used only where asked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import metamusic.models.vqgan as vqgan_module
from metamusic.models.vqgan import VQGAN, Conv3x3, VQGANConfig
from metamusic.models.winograd import winograd_conv3x3, winograd_helps
from metamusic.optim.speed import winograd_convolutions


@pytest.mark.parametrize(
    "n, c, k, h, w, bias",
    [(1, 16, 16, 32, 32, True), (2, 8, 5, 37, 33, True), (1, 3, 7, 4, 9, False), (1, 32, 64, 61, 64, True)],
)
def test_winograd_matches_the_direct_convolution(n, c, k, h, w, bias):
    gen = torch.Generator().manual_seed(n * 1000 + h)
    x = torch.randn(n, c, h, w, generator=gen)
    weight = torch.randn(k, c, 3, 3, generator=gen) / (9 * c) ** 0.5
    b = torch.randn(k, generator=gen) if bias else None
    exact = F.conv2d(x.double(), weight.double(), b.double() if bias else None, padding=1)
    with torch.no_grad():
        got = winograd_conv3x3(x, weight, b)
    assert got.shape == exact.shape and got.dtype == torch.float32 and got.is_contiguous()
    # Same accuracy class as float32's direct convolution (bf16 would be ~1e-2).
    assert ((got.double() - exact).norm() / exact.norm()).item() < 5e-6
    assert (got.double() - exact).abs().max().item() < 1e-4


@pytest.mark.parametrize("h, w", [(32, 32), (37, 30)])
def test_winograd_keeps_a_channels_last_input_channels_last(h, w):
    # The decoder's float32 pass runs channels-last; an NCHW result would send the next
    # transposed convolution (the upsampling) down oneDNN's 2x slower NCHW path.
    gen = torch.Generator().manual_seed(h)
    x = torch.randn(1, 16, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(8, 16, 3, 3, generator=gen) / 12, torch.randn(8, generator=gen)
    with torch.no_grad():
        got = winograd_conv3x3(x, weight, bias)
        plain = winograd_conv3x3(x.contiguous(), weight, bias)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    assert plain.is_contiguous()
    assert torch.equal(got, plain)


def test_winograd_helps_only_float32_no_grad_cpu_3x3_stride_1_from_32_pixels():
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        assert winograd_helps(x, conv)
        assert not winograd_helps(x[..., :16, :16], conv)  # too small to pay off
        assert not winograd_helps(x.bfloat16(), conv)
        assert not winograd_helps(x, torch.nn.Conv2d(4, 4, 3, padding=1, stride=2))
        assert not winograd_helps(x, torch.nn.Conv2d(4, 4, 1))
        assert not winograd_helps(x, torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))
    assert not winograd_helps(x, conv)  # gradients on: the direct path (it has a backward)


def test_conv3x3_uses_winograd_only_inside_the_block(monkeypatch):
    calls = []

    def counting(*args):
        calls.append(args[0].shape)
        return winograd_conv3x3(*args)

    monkeypatch.setattr(vqgan_module, "winograd_conv3x3", counting)
    conv = Conv3x3(8, 8)
    x = torch.randn(1, 8, 40, 40)
    with torch.no_grad():
        direct = conv(x)
        assert calls == []
        with winograd_convolutions(conv):
            fast = conv(x)
        assert calls == [x.shape]
        conv(x)
    assert calls == [x.shape] and conv.winograd is False  # flag restored
    assert torch.allclose(fast, direct, rtol=1e-5, atol=1e-5)
    with winograd_convolutions(conv):
        y = conv(x.requires_grad_(True))
    y.sum().backward()  # with gradients the direct convolution runs
    assert calls == [x.shape] and x.grad is not None


def test_winograd_flags_are_restored_after_an_error():
    conv = Conv3x3(4, 4)
    with pytest.raises(RuntimeError), winograd_convolutions(conv):
        assert conv.winograd is True
        raise RuntimeError("boom")
    assert conv.winograd is False


def test_decoder_low_levels_same_value_with_winograd():
    config = VQGANConfig(
        embed_dim=4, n_embed=16, z_channels=4, ch=32, ch_mult=(1, 1), num_res_blocks=1,
        attn_resolutions=(), resolution=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VQGAN(config).eval()
    z = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        direct = model.decode_low(z, 1)
        with winograd_convolutions(model):
            fast = model.decode_low(z, 1)
    assert ((fast - direct).norm() / direct.norm()).item() < 1e-5
    assert not torch.equal(fast, direct)  # it did run the other algorithm
