"""The fast step keeps the method's meaning: bf16 vs fp32, fp32 vs the reference loop, low_memory.

Tiny checkpoints on CPU; no timing asserts (timings come from bench/step.py).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from metamusic.errors import InputError
from metamusic.models.clip import load_clip
from metamusic.models.vqgan_loader import load_vqgan
from metamusic.optim import StepConfig, Stepper, Target, random_latent, z_bounds
from metamusic.optim.speed import decoder_checkpointing, sequence_first_attention

BENCH = Path(__file__).resolve().parents[2] / "bench" / "step.py"
CUTN = 6


def _load_bench():
    spec = importlib.util.spec_from_file_location("metamusic_bench_step", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_bench()


@pytest.fixture(scope="module")
def models(tiny_models):
    vqgan = load_vqgan(tiny_models["vqgan_config"], tiny_models["vqgan_checkpoint"])
    return vqgan, load_clip(tiny_models["clip"])


def _z0(vqgan, seed: int = 3) -> torch.Tensor:
    grid = 32 // vqgan.factor  # tiny CLIP input is 32x32: decode at that size
    return random_latent(vqgan.codebook, (grid, grid), torch.Generator().manual_seed(seed))


def _targets(dim: int) -> list[Target]:
    gen = torch.Generator().manual_seed(11)
    return [Target(torch.randn(1, dim, generator=gen)), Target(torch.randn(2, dim, generator=gen), -0.5)]


def _grad_after_step(models, seed: int = 5, **config) -> tuple[float, torch.Tensor]:
    vqgan, perceptor = models
    stepper = Stepper(vqgan, perceptor, StepConfig(cutn=CUTN, **config), _z0(vqgan))
    result = stepper.step(_targets(perceptor.embed_dim), seed, index=0)
    return result.loss, stepper.z.grad.detach().clone()


def test_bf16_gradient_on_z_matches_fp32(models):
    loss32, grad32 = _grad_after_step(models, precision="fp32")
    loss16, grad16 = _grad_after_step(models, precision="bf16")
    assert grad32.abs().sum() > 0
    cos = F.cosine_similarity(grad32.flatten(), grad16.flatten(), dim=0).item()
    assert cos >= 0.99, cos
    assert not torch.equal(grad32, grad16)  # bf16 really ran
    assert math.isclose(loss32, loss16, rel_tol=0.05)


def test_fp32_step_equals_reference_loop_without_augments_and_noise(models, bench):
    vqgan, perceptor = models
    targets = _targets(perceptor.embed_dim)
    config = StepConfig(cutn=CUTN, augments=(), noise_fac=0.0, precision="fp32", lr=0.1)
    stepper = Stepper(vqgan, perceptor, config, _z0(vqgan))
    z = _z0(vqgan).requires_grad_(True)
    adam = torch.optim.Adam([z], lr=0.1)
    lo, hi = z_bounds(vqgan.codebook)
    for i in range(3):  # the update and clamp must agree too, or later losses drift apart
        ours = stepper.step(targets, seed=i, index=i).loss
        ref = bench.reference_step(
            vqgan, perceptor, z, adam, targets, cutn=CUTN, augment=None, noise_fac=0.0,
            z_min=lo, z_max=hi, generator=torch.Generator().manual_seed(i),
        )
        assert abs(ours - ref) <= 1e-5, (i, ours, ref)
    assert torch.allclose(stepper.latent, z.detach(), atol=1e-5)
    assert not torch.equal(stepper.latent, _z0(vqgan))  # the steps moved z


def test_reference_decoding_runs_taming_operations(models, bench, monkeypatch):
    # The reference step must pay for taming's own operations: its swish x * sigmoid(x), its
    # bmm/softmax attention and nearest-x2-then-conv upsampling, not MetaMusic's fused ones.
    vqgan, _ = models
    z_q = vqgan.quantize_latent(_z0(vqgan))
    with torch.no_grad():
        ours = vqgan.decode(z_q)

    def forbidden(*args, **kwargs):
        raise AssertionError("a fused operation ran in the reference decoder")

    monkeypatch.setattr(F, "silu", forbidden)
    monkeypatch.setattr(F, "scaled_dot_product_attention", forbidden)
    monkeypatch.setattr(F, "conv_transpose2d", forbidden)
    with torch.no_grad():
        with bench.taming_decoding(vqgan):
            taming = vqgan.decode(z_q)
        with pytest.raises(AssertionError, match="fused operation"):
            vqgan.decode(z_q)  # restored afterwards: MetaMusic's own decoder again
    assert torch.allclose(taming, ours, atol=1e-5)


def test_reference_loop_with_augments_and_noise_runs(models, bench):
    vqgan, perceptor = models
    run = bench.baseline_runner(vqgan, perceptor, 32, CUTN, torch.device("cpu"))
    losses = [run(i) for i in range(2)]
    assert all(math.isfinite(x) for x in losses) and losses[0] != losses[1]


def test_low_memory_gives_same_loss_and_gradient(models):
    vqgan, _ = models
    # The first block of the full-resolution level runs again in backward when checkpointed.
    first = vqgan.decoder.up[0].block[0]
    calls = []
    handle = first.register_forward_hook(lambda *_: calls.append(1))
    try:
        loss_a, grad_a = _grad_after_step(models, precision="fp32")
        plain_calls = len(calls)
        loss_b, grad_b = _grad_after_step(models, precision="fp32", low_memory=True)
    finally:
        handle.remove()
    assert plain_calls == 1 and len(calls) - plain_calls == 2  # forward + recomputation
    assert vqgan.decoder.use_checkpointing is False  # restored after the step
    assert math.isclose(loss_a, loss_b, rel_tol=0, abs_tol=1e-6)
    assert torch.allclose(grad_a, grad_b, rtol=1e-5, atol=1e-7)


def test_low_memory_checkpoints_the_bf16_copy_that_builds_the_graph(models):
    from metamusic.optim.speed import low_precision_twin

    vqgan, _ = models
    _grad_after_step(models, precision="bf16")  # makes the decoder's bf16 copy
    twin = low_precision_twin(vqgan, torch.bfloat16, channels_last=True, prepack=True)  # the stepper's copy
    calls = []
    handle = twin.decoder.up[0].block[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        _grad_after_step(models, precision="bf16")
        plain = len(calls)
        _grad_after_step(models, precision="bf16", low_memory=True)
    finally:
        handle.remove()
    assert plain == 1 and len(calls) - plain == 2  # forward + recomputation in the bf16 copy
    assert twin.decoder.use_checkpointing is False and vqgan.decoder.use_checkpointing is False


def test_low_memory_needs_a_checkpointable_decoder(models):
    vqgan, perceptor = models

    class Plain:
        codebook = vqgan.codebook

        def decode(self, z_q):
            return vqgan.decode(z_q)

    with pytest.raises(InputError, match="low_memory"):
        Stepper(Plain(), perceptor, StepConfig(cutn=2, low_memory=True, precision="fp32"), _z0(vqgan))
    Stepper(Plain(), perceptor, StepConfig(cutn=2, precision="fp32"), _z0(vqgan))  # fine without it


def test_decoder_checkpointing_restores_flag_on_error(models):
    vqgan, _ = models
    with pytest.raises(RuntimeError):
        with decoder_checkpointing(vqgan, True):
            assert vqgan.decoder.use_checkpointing is True
            raise RuntimeError("boom")
    assert vqgan.decoder.use_checkpointing is False


def test_sequence_first_attention_same_embeddings_and_restores_layout(models):
    _, perceptor = models
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    transformer = perceptor.model.visual.transformer
    assert transformer.batch_first is True
    before = perceptor.encode_image(x)
    with sequence_first_attention(perceptor):
        assert transformer.batch_first is False
        assert not transformer.resblocks[0].attn.batch_first
        during = perceptor.encode_image(x)
    assert transformer.batch_first is True and transformer.resblocks[0].attn.batch_first
    assert torch.allclose(before, during, atol=1e-5)


def test_channels_last_keeps_the_loss(models):
    loss_a, grad_a = _grad_after_step(models, precision="fp32", channels_last=False)
    loss_b, grad_b = _grad_after_step(models, precision="fp32", channels_last=True)
    assert math.isclose(loss_a, loss_b, abs_tol=1e-5)
    assert torch.allclose(grad_a, grad_b, rtol=1e-4, atol=1e-6)


def test_bf16_decode_takes_the_low_levels_value_from_float32_and_the_gradient_from_bf16(models):
    from metamusic.optim.speed import _TWINS, FLOAT32_LEVELS
    from metamusic.optim.stepper import decode_quantised

    vqgan, _ = models
    seen = []
    hook = vqgan.decoder.mid.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    z = _z0(vqgan).requires_grad_(True)
    try:
        z_q = vqgan.quantize_latent(z)
        image = decode_quantised(vqgan, z_q, torch.bfloat16)
    finally:
        hook.remove()
    assert FLOAT32_LEVELS > 0 and seen == [torch.float32]  # the original ran the low levels in float32
    twin = _TWINS[vqgan][1]
    assert twin.decoder.mid.block_1.conv1.weight.dtype == torch.bfloat16
    assert twin.decoder.norm_out.weight.dtype == torch.float32  # norms keep float32 parameters
    image.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # through the bf16 twin (straight-through)
    with torch.no_grad():
        exact = decode_quantised(vqgan, z_q, None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            all_bf16 = ((vqgan.decode(z_q) + 1) / 2).clamp(0, 1).float()
    mixed = image.detach()
    assert (mixed - exact).abs().mean() < (all_bf16 - exact).abs().mean()  # closer to float32


def test_bf16_decode_keeps_every_norm_channels_last_after_the_float32_levels(models):
    # The float32 value enters the bf16 copy through replace_grad; a layout slip there made the
    # upper levels run NCHW (each convolution then converting layouts twice).
    from metamusic.optim.speed import _TWINS
    from metamusic.optim.stepper import decode_quantised

    vqgan, _ = models
    z = _z0(vqgan).requires_grad_(True)
    decode_quantised(vqgan, vqgan.quantize_latent(z), torch.bfloat16)  # builds the bf16 copy
    twin = _TWINS[vqgan][1]
    layouts = []

    def record(module, inputs, output):
        if output.shape[-1] > 1 and output.shape[-2] > 1:
            layouts.append(output.is_contiguous(memory_format=torch.channels_last))

    norms = [m for m in twin.decoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    hooks = [m.register_forward_hook(record) for m in norms]
    try:
        image = decode_quantised(vqgan, vqgan.quantize_latent(z), torch.bfloat16)
    finally:
        for hook in hooks:
            hook.remove()
    image.sum().backward()
    assert len(layouts) > 4 and all(layouts), layouts


def test_low_precision_twin_is_made_once_and_again_after_a_weight_changes(models):
    from metamusic.optim.speed import low_precision_twin

    vqgan, _ = models
    twin = low_precision_twin(vqgan, torch.bfloat16, channels_last=True)
    assert low_precision_twin(vqgan, torch.bfloat16, channels_last=True) is twin
    conv = twin.decoder.conv_in.weight
    assert conv.dtype == torch.bfloat16 and conv.is_contiguous(memory_format=torch.channels_last)
    assert vqgan.decoder.conv_in.weight.dtype == torch.float32  # the original is untouched
    with torch.no_grad():
        vqgan.decoder.conv_in.bias.add_(0.0)  # bumps the version: the weights may differ now
    again = low_precision_twin(vqgan, torch.bfloat16, channels_last=True)
    assert again is not twin
    torch.testing.assert_close(again.decoder.conv_in.weight, vqgan.decoder.conv_in.weight.bfloat16())


def test_low_precision_perceptor_copies_only_the_image_tower(models):
    from metamusic.optim.speed import low_precision_perceptor

    _, perceptor = models
    fast = low_precision_perceptor(perceptor, torch.bfloat16)
    assert low_precision_perceptor(perceptor, torch.bfloat16) is fast
    assert fast.model.visual is not perceptor.model.visual
    assert fast.model.transformer is perceptor.model.transformer  # text tower shared, not copied
    assert next(perceptor.model.visual.parameters()).dtype == torch.float32
    x = torch.rand(2, 3, perceptor.input_resolution, perceptor.input_resolution,
                   generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = fast.encode_image(perceptor.normalize(x)).float()
    b = perceptor.encode_image(perceptor.normalize(x))
    assert F.cosine_similarity(a, b).min() > 0.99


def test_bench_breakdown_and_gradient_cosine_on_tiny_models(models, bench):
    vqgan, perceptor = models
    device = torch.device("cpu")
    parts = bench.step_breakdown(vqgan, perceptor, 32, CUTN, device, repeats=1, precision="bf16")
    assert set(parts) == {"decoder", "augments", "clip", "optimiser"}
    assert all(v > 0 for v in parts.values())
    cosines = bench.grad_cosine(vqgan, perceptor, 32, CUTN, device, seeds=(7,), precision="bf16")
    same = bench.grad_cosine(vqgan, perceptor, 32, CUTN, device, seeds=(7,), precision="fp32")
    assert 0.9 < cosines[0] < 1.0 + 1e-6 and abs(same[0] - 1.0) < 1e-6
