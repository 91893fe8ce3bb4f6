"""optim.prepack: frozen bf16 convolutions with weights reordered once for oneDNN."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from metamusic.optim.prepack import (
    PREPACK_MAX_SIZE,
    PrepackedConv2d,
    prepack_convolutions,
    prepacking_available,
)

pytestmark = pytest.mark.skipif(not prepacking_available(), reason="torch build without oneDNN pointwise ops")

CL = torch.channels_last


@pytest.fixture(scope="module")
def tiny(tiny_models):
    from metamusic.models.clip import load_clip
    from metamusic.models.vqgan_loader import load_vqgan

    return load_vqgan(tiny_models["vqgan_config"], tiny_models["vqgan_checkpoint"]), load_clip(tiny_models["clip"])


def _pair(cin: int, cout: int, k: int, seed: int) -> tuple[nn.Conv2d, PrepackedConv2d]:
    """A frozen bf16 nn.Conv2d and a prepacked copy with the same parameters."""
    torch.manual_seed(seed)
    plain = nn.Conv2d(cin, cout, k, padding=k // 2).to(torch.bfloat16, memory_format=CL).requires_grad_(False)
    packed = copy.deepcopy(plain)
    assert prepack_convolutions(packed) == 1 and type(packed) is PrepackedConv2d
    return plain, packed


def _input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(torch.bfloat16).contiguous(memory_format=CL)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("batch", [1, 2])
def test_prepacked_conv_equals_conv2d_values_and_input_gradient(k, batch):
    plain, packed = _pair(16, 24, k, seed=k + batch)
    x = _input((batch, 16, 12, 12), seed=3)
    grad_out = _input((batch, 24, 12, 12), seed=4)
    results = []
    for conv in (plain, packed):
        xx = x.clone().requires_grad_(True)
        y = conv(xx)
        y.backward(grad_out)
        results.append((y.detach().float(), xx.grad.float()))
    assert packed._packs is not None  # the reordered path ran
    for ours, theirs in zip(results[1], results[0]):
        assert ours.abs().mean() > 0.01
        torch.testing.assert_close(ours, theirs, rtol=1e-2, atol=1e-2)  # bf16 outputs
    # Against float32 on the same bf16 values: as close as the plain bf16 conv.
    ref = nn.functional.conv2d(x.float(), plain.weight.float(), plain.bias.float(), padding=k // 2)
    err = lambda y: ((y - ref).norm() / ref.norm()).item()  # noqa: E731
    assert err(results[1][0]) < 1e-2 and err(results[1][0]) <= 1.5 * err(results[0][0]) + 1e-6


def test_prepacked_conv_without_same_padding_gives_conv2ds_input_gradient():
    torch.manual_seed(15)
    plain = nn.Conv2d(8, 8, 3, padding=0).to(torch.bfloat16, memory_format=CL).requires_grad_(False)
    packed = copy.deepcopy(plain)
    prepack_convolutions(packed)
    x = _input((1, 8, 10, 10), seed=16)
    grads = []
    for conv in (plain, packed):
        xx = x.clone().requires_grad_(True)
        conv(xx).float().square().sum().backward()
        grads.append(xx.grad.float())
    assert packed._packs is not None
    torch.testing.assert_close(grads[1], grads[0], rtol=2e-2, atol=2e-2)


def test_prepacked_conv_without_gradient_uses_the_packs_too():
    plain, packed = _pair(8, 8, 3, seed=5)
    x = _input((1, 8, 16, 16), seed=6)
    with torch.no_grad():
        torch.testing.assert_close(packed(x).float(), plain(x).float(), rtol=1e-2, atol=1e-2)
    assert packed._packs is not None


def test_prepacked_conv_falls_back_where_the_packs_do_not_apply():
    plain, packed = _pair(8, 8, 3, seed=7)
    big = _input((1, 8, PREPACK_MAX_SIZE + 2, PREPACK_MAX_SIZE + 2), seed=8)
    torch.testing.assert_close(packed(big).float(), plain(big).float())
    assert packed._packs is None
    # float32 input (autocast's business): the plain call, which rejects the dtype mix like nn.Conv2d.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = packed(torch.randn(1, 8, 8, 8))
    assert out.dtype == torch.bfloat16 and packed._packs is None
    # A weight that learns gets its gradient from the plain call.
    packed.requires_grad_(True)
    x = _input((1, 8, 8, 8), seed=9)
    packed(x).float().sum().backward()
    assert packed.weight.grad is not None and packed._packs is None


def test_prepacked_conv_repacks_when_the_weight_or_the_shape_changes():
    plain, packed = _pair(8, 8, 3, seed=10)
    x = _input((1, 8, 8, 8), seed=11)
    with torch.no_grad():
        packed(x)
        first = packed._packs
        packed(x)
        assert packed._packs is first  # reused
        packed.weight.mul_(-1)  # in place: a new version
        plain.weight.mul_(-1)
        torch.testing.assert_close(packed(x).float(), plain(x).float(), rtol=1e-2, atol=1e-2)
        assert packed._packs is not first
        second = packed._packs
        x2 = _input((2, 8, 16, 16), seed=12)
        torch.testing.assert_close(packed(x2).float(), plain(x2).float(), rtol=1e-2, atol=1e-2)
        assert packed._packs is not second


def test_prepack_convolutions_swaps_plain_convs_and_keeps_the_state_dict(tiny):
    from metamusic.models.vqgan import Conv3x3, Upsample

    model = copy.deepcopy(tiny[0])
    keys = list(model.state_dict())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert any(isinstance(m, Conv3x3) for m in convs)
    assert prepack_convolutions(model) == len(convs)
    assert all(type(m) is PrepackedConv2d for m in model.modules() if isinstance(m, nn.Conv2d))
    assert list(model.state_dict()) == keys
    assert any(isinstance(m, Upsample) for m in model.modules())  # untouched: not a Conv2d
    assert prepack_convolutions(model) == 0  # already swapped


def test_prepack_convolutions_leaves_other_conv_subclasses():
    class Doubled(nn.Conv2d):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(nn.Conv2d(3, 3, 1), Doubled(3, 3, 1))
    assert prepack_convolutions(model) == 1
    assert type(model[0]) is PrepackedConv2d and type(model[1]) is Doubled


def test_bf16_step_runs_the_decoders_low_levels_through_the_packs(tiny):
    from metamusic.optim import StepConfig, Stepper
    from metamusic.optim.init import random_latent
    from metamusic.optim.prompts import Target
    from metamusic.optim.speed import low_precision_twin

    vqgan, perceptor = tiny
    z = random_latent(vqgan.codebook, (32 // vqgan.factor,) * 2, torch.Generator().manual_seed(13))
    stepper = Stepper(vqgan, perceptor, StepConfig(cutn=2, precision="bf16"), z)
    target = Target(torch.randn(1, perceptor.embed_dim, generator=torch.Generator().manual_seed(14)))
    stepper.step([target], 0, index=0)
    twin = low_precision_twin(vqgan, torch.bfloat16, channels_last=True, prepack=True)
    packed = [m for m in twin.modules() if type(m) is PrepackedConv2d and m._packs is not None]
    assert packed and stepper.z.grad is not None and stepper.z.grad.abs().sum() > 0
