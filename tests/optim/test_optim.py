"""Tests of the VQGAN-CLIP optimisation step with tiny toy decoder and perceptor (CPU)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metamusic.errors import InputError
from metamusic.ops import (
    clamp_with_grad,
    replace_grad,
    spherical_distance,
    vector_quantize,
)
from metamusic.optim import (
    AUGMENT_CODES,
    CUT_METHODS,
    OPTIMISERS,
    StepConfig,
    Stepper,
    Target,
    apply_augments,
    blend_targets,
    build_augments,
    build_optimiser,
    clamp_latent,
    embed_image_prompt,
    latest_reference,
    make_cutouts,
    method_augments,
    noise_image,
    noise_targets,
    optimise_segment,
    parse_prompt,
    random_latent,
    split_prompts,
    split_story,
    step_seed,
    target_loss,
    z_bounds,
)
from metamusic.optim.cutouts import random_crops, resample

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
EMBED_DIM = 16
CHANNELS = 8


def _init_params(module: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter from a private generator (no global RNG use)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
    return module.eval().requires_grad_(False)


class ToyDecoder(nn.Module):
    """z_q (1, C, 4, 4) -> image (1, 3, 32, 32) in [-1, 1]; codebook (64, C)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(CHANNELS, 16, 3, padding=1),
            nn.SiLU(),
            nn.Upsample(scale_factor=8, mode="nearest"),
            nn.Conv2d(16, 3, 3, padding=1),
        )
        _init_params(self, seed)
        gen = torch.Generator().manual_seed(seed + 100)
        self.register_buffer("codebook", torch.randn(64, CHANNELS, generator=gen))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z_q))


class ToyPerceptor(nn.Module):
    """CLIP-like: (B, 3, 16, 16) normalised -> (B, 16) embeddings."""

    input_resolution = 16

    def __init__(self, seed: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, EMBED_DIM),
        )
        _init_params(self, seed)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN)[None, :, None, None])
        self.register_buffer("std", torch.tensor(CLIP_STD)[None, :, None, None])

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def decoder() -> ToyDecoder:
    return ToyDecoder()


@pytest.fixture(scope="module")
def perceptor() -> ToyPerceptor:
    return ToyPerceptor()


def _z0(decoder: ToyDecoder, seed: int = 5) -> torch.Tensor:
    return random_latent(decoder.codebook, (4, 4), torch.Generator().manual_seed(seed))


def _target(seed: int = 7) -> Target:
    return Target(torch.randn(1, EMBED_DIM, generator=torch.Generator().manual_seed(seed)))


SMALL = {"cutn": 4, "precision": "fp32"}


# ---------------------------------------------------------------- ops and prompt parsing


def test_clamp_with_grad_passes_gradient_only_back_into_range():
    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    y = clamp_with_grad(x, 0.0, 1.0)
    assert y.tolist() == [0.0, 0.5, 1.0]
    # Loss -y pushes every entry up: blocked at 1.5 (further out), passes at -0.5 (back in).
    (-y.sum()).backward()
    assert x.grad.tolist() == [-1.0, -1.0, 0.0]
    x.grad = None
    y = clamp_with_grad(x, 0.0, 1.0)
    y.sum().backward()  # gradient +1 pushes down: passes at 1.5, blocked at -0.5
    assert x.grad.tolist() == [0.0, 1.0, 1.0]


def test_replace_grad_keeps_a_channels_last_value_channels_last():
    # A (1, C, H, W) channels-last value must stay recognisably channels-last (its batch
    # stride too), or GroupNorm writes NCHW and every following bf16 convolution converts.
    value = torch.randn(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    source = torch.randn(1, 8, 5, 6, requires_grad=True)
    out = replace_grad(value, source)
    assert out.stride() == value.stride()
    assert torch.equal(out, value)
    normed = F.group_norm(out, 4)
    assert normed.is_contiguous(memory_format=torch.channels_last) and not normed.is_contiguous()
    (out * 3).sum().backward()
    assert torch.equal(source.grad, torch.full_like(source, 3.0))


def test_vector_quantize_picks_nearest_code_with_straight_through_gradient():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 3.0]])
    z = torch.tensor([[[[0.9, -1.5]], [[0.8, 2.0]]]], requires_grad=True)  # (1, 2, 1, 2)
    z_q = vector_quantize(z, codebook)
    assert z_q[0, :, 0, 0].tolist() == [1.0, 1.0]
    assert z_q[0, :, 0, 1].tolist() == [-2.0, 3.0]
    (z_q * torch.arange(4.0).view(1, 2, 1, 2)).sum().backward()
    assert torch.equal(z.grad, torch.arange(4.0).view(1, 2, 1, 2))


def test_spherical_distance_hand_values():
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([0.0, 3.0])  # orthogonal, not unit: normalised inside
    assert spherical_distance(a, b).item() == pytest.approx(2 * (math.pi / 4) ** 2, rel=1e-6)
    assert spherical_distance(a, 5 * a).item() == pytest.approx(0.0, abs=1e-7)
    assert spherical_distance(a, -a).item() == pytest.approx(2 * (math.pi / 2) ** 2, rel=1e-6)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red fox", ("a red fox", 1.0, -math.inf)),
        ("a red fox:2", ("a red fox", 2.0, -math.inf)),
        ("a red fox:-0.5:-0.9", ("a red fox", -0.5, -0.9)),
        ("http://host/x.png", ("http://host/x.png", 1.0, -math.inf)),
        ("http://host/x.png:0.5", ("http://host/x.png", 0.5, -math.inf)),
        ("https://h:8080/x.png:2:0.1", ("https://h:8080/x.png", 2.0, 0.1)),
        ("Note: keep colons", ("Note: keep colons", 1.0, -math.inf)),
    ],
)
def test_parse_prompt(text, expected):
    assert parse_prompt(text) == expected


def test_parse_prompt_rejects_nan_and_splitters():
    with pytest.raises(InputError):
        parse_prompt("a cat:nan")
    assert split_prompts(" a | b:2 || ") == ["a", "b:2"]
    assert split_story("a | b ^ c ^ ") == ["a | b", "c"]


# ---------------------------------------------------------------- target loss


def test_target_loss_equals_hand_computation():
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # (3, 2)
    embed = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (2, 2)
    t = Target(embed, weight=1.5)
    angles = torch.tensor([[0.0, 90.0], [90.0, 0.0], [45.0, 45.0]]).deg2rad()
    dists = 2 * torch.arcsin(2 * torch.sin(angles / 2) / 2) ** 2  # chord |a-b| = 2 sin(theta/2)
    assert target_loss(img, t).item() == pytest.approx(1.5 * dists.mean().item(), rel=1e-5)


def test_target_loss_weight_sign_pushes_away():
    img = torch.tensor([[1.0, 0.2]], requires_grad=True)
    embed = torch.tensor([[1.0, 0.0]])
    pos, neg = target_loss(img, Target(embed, 2.0)), target_loss(img, Target(embed, -2.0))
    assert neg.item() == pytest.approx(-pos.item())
    (g_pos,) = torch.autograd.grad(pos, img)
    (g_neg,) = torch.autograd.grad(target_loss(img, Target(embed, -2.0)), img)
    assert torch.allclose(g_neg, -g_pos) and g_pos.abs().sum() > 0
    assert target_loss(img, Target(embed, 0.0)).item() == 0.0


def test_target_loss_stop_floors_gradient_not_value():
    img = torch.tensor([[1.0, 0.2], [0.0, 1.0]], requires_grad=True)
    embed = torch.tensor([[1.0, 0.0]])
    d = spherical_distance(img.detach(), embed)  # (2,) one small, one large
    free = target_loss(img, Target(embed))
    stop_mid = target_loss(img, Target(embed, stop=float(d.mean())))
    stop_high = target_loss(img, Target(embed, stop=10.0))
    assert stop_mid.item() == pytest.approx(free.item()) == pytest.approx(stop_high.item())
    (g_mid,) = torch.autograd.grad(stop_mid, img)
    (g_high,) = torch.autograd.grad(stop_high, img)
    assert torch.all(g_high == 0)
    assert torch.all(g_mid[0] == 0) and g_mid[1].abs().sum() > 0  # only the far one pulls


def test_target_is_unit_normalised_and_validated():
    t = Target(torch.tensor([3.0, 4.0]))
    assert t.embed.shape == (1, 2) and torch.allclose(t.embed.norm(dim=-1), torch.ones(1))
    with pytest.raises(InputError):
        Target(torch.tensor([[float("nan"), 1.0]]))


def test_blend_targets_as_documented():
    text, audio = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([[0.0, 2.0, 0.0]])
    half = blend_targets(text, audio, 1.0, 1.0)
    assert torch.allclose(half.embed, torch.tensor([[1.0, 1.0, 0.0]]) / math.sqrt(2))
    assert half.weight == 1.0 and half.stop == -math.inf
    assert torch.allclose(blend_targets(text, audio, 1.0, 0.0).embed, text[None])
    tilted = blend_targets(text, audio, 3.0, 1.0).embed[0]
    assert tilted[0] > tilted[1] > 0 and tilted.norm().item() == pytest.approx(1.0)
    with pytest.raises(InputError):
        blend_targets(text, audio, 0.0, 0.0)


def test_noise_targets_are_seeded_normal_embeddings():
    a, b = noise_targets([1, 2], [0.5, -1.0], EMBED_DIM)
    expected = torch.empty(1, EMBED_DIM).normal_(generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a.embed, F.normalize(expected, dim=-1))
    assert a.weight == 0.5 and b.weight == -1.0 and not torch.allclose(a.embed, b.embed)
    assert torch.equal(noise_targets([1], [1.0], EMBED_DIM)[0].embed, a.embed)
    with pytest.raises(InputError, match="weight"):
        noise_targets([1, 2], [1.0], EMBED_DIM)


# ---------------------------------------------------------------- cut-outs and augments


@pytest.mark.parametrize("method", CUT_METHODS)
def test_cut_method_shape_and_full_step(method, decoder, perceptor):
    image = torch.rand(1, 3, 32, 24, generator=torch.Generator().manual_seed(0))
    cut = make_cutouts(image, method, 16, 5, 1.0, None, torch.Generator().manual_seed(1))
    assert cut.shape == (5, 3, 16, 16)
    if method == "original":
        assert cut.min() >= 0 and cut.max() <= 1
    stepper = Stepper(decoder, perceptor, StepConfig(cut_method=method, **SMALL), _z0(decoder))
    before = stepper.latent
    result = stepper.step([_target()], seed=3, index=0)
    assert math.isfinite(result.loss) and not torch.equal(before, stepper.latent)


def test_latest_equals_latest_reference(perceptor):
    image = torch.rand(1, 3, 40, 32, generator=torch.Generator().manual_seed(0))
    aug = build_augments(("Af", "Pe", "Ji", "Er"), 16)
    fast = make_cutouts(
        image, "latest", 16, 6, augment=lambda b: apply_augments(aug, b, 11),
        generator=torch.Generator().manual_seed(4),
    )
    ref = latest_reference(
        image, 16, 6, augment=lambda b: apply_augments(aug, b, 11),
        generator=torch.Generator().manual_seed(4),
    )
    assert torch.equal(fast, ref)
    assert not torch.equal(fast[0], fast[1])  # augments and noise differ per cut-out


def test_resample_keeps_constants_and_shapes():
    flat = torch.full((2, 3, 40, 30), 0.25)
    out = resample(flat, (16, 12))
    assert out.shape == (2, 3, 16, 12) and torch.allclose(out, torch.full_like(out, 0.25))
    x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(resample(x, (9, 9)), x, atol=1e-6)  # no prefilter, aligned corners


def test_cut_pow_shrinks_original_crops():
    sizes = {
        p: [s for _, _, s in random_crops(64, 64, 16, 200, p, torch.Generator().manual_seed(0))]
        for p in (1.0, 4.0)
    }
    assert all(16 <= s <= 64 for s in sizes[1.0] + sizes[4.0])
    assert sum(sizes[4.0]) / 200 < sum(sizes[1.0]) / 200 - 8
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    a = make_cutouts(image, "original", 16, 4, 1.0, None, torch.Generator().manual_seed(2))
    b = make_cutouts(image, "original", 16, 4, 4.0, None, torch.Generator().manual_seed(2))
    assert not torch.equal(a, b)


@pytest.mark.parametrize("code", AUGMENT_CODES)
def test_each_augment_code_runs_a_step(code, decoder, perceptor):
    config = StepConfig(augments=(code,), **SMALL)
    stepper = Stepper(decoder, perceptor, config, _z0(decoder))
    assert len(stepper.augment) == 1
    result = stepper.step([_target()], seed=1, index=0)
    assert math.isfinite(result.loss)
    assert stepper.z.grad is not None and stepper.z.grad.abs().sum() > 0


def test_unknown_augment_code_names_it():
    with pytest.raises(InputError, match="Zz"):
        build_augments(["Af", "Zz"], 16)
    with pytest.raises(InputError, match="Qq"):
        StepConfig(augments=("Qq",))


def test_method_augments_follow_reference():
    assert method_augments("original", ("Af",), 16) is None
    assert len(method_augments("updated", (), 16)) == 5  # fixed list, codes ignored
    assert len(method_augments("updatedpooling", (), 16)) == 4
    nr = method_augments("nrupdated", ("Af", "Pe"), 16)
    latest = method_augments("latest", ("Af", "Pe"), 16)
    assert "degrees=30" in repr(nr[0]) and "degrees=15" in repr(latest[0])
    assert "distortion_scale=0.5" in repr(nr[1]) and "distortion_scale=0.7" in repr(latest[1])


def test_apply_augments_is_seeded_and_leaves_global_rng_alone():
    aug = build_augments(("Af", "Pe", "Ji", "Er"), 16)
    batch = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    a, b = apply_augments(aug, batch, 5), apply_augments(aug, batch, 5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, apply_augments(aug, batch, 6))


# ---------------------------------------------------------------- optimisers


@pytest.mark.parametrize("name", OPTIMISERS)
def test_each_optimiser_steps_and_changes_z(name, decoder, perceptor):
    stepper = Stepper(decoder, perceptor, StepConfig(optimiser=name.lower(), **SMALL), _z0(decoder))
    assert type(stepper.optimiser).__name__ == name
    before = stepper.latent
    stepper.step([_target()], seed=2, index=0)
    assert not torch.equal(before, stepper.latent)


def test_unknown_optimiser_is_input_error():
    with pytest.raises(InputError, match="Adadelta"):
        build_optimiser("Adadelta", [torch.zeros(1, requires_grad=True)], 0.1)


# ---------------------------------------------------------------- the stepper


def test_loss_decreases_toward_fixed_target(decoder, perceptor):
    config = StepConfig(augments=(), noise_fac=0.0, cutn=2, lr=0.2, precision="fp32")
    stepper = Stepper(decoder, perceptor, config, _z0(decoder))
    target = [_target()]
    losses = [stepper.step(target, seed=i, index=i).loss for i in range(30)]
    assert sum(losses[-5:]) / 5 < 0.95 * losses[0], losses
    assert min(losses[-5:]) < min(losses[:5])


def _run(decoder, perceptor, seed: int, n: int = 6):
    stepper = Stepper(decoder, perceptor, StepConfig(lr=0.3, **SMALL), _z0(decoder))
    results = [stepper.step([_target()], seed=seed * 100 + i, index=i) for i in range(n)]
    images = torch.cat([r.image for r in results] + [stepper.image()])
    return stepper.latent, images, [r.loss for r in results]


def test_same_seed_is_bit_identical_and_independent_of_global_rng(decoder, perceptor):
    torch.manual_seed(123)
    z_a, img_a, loss_a = _run(decoder, perceptor, seed=1)
    torch.manual_seed(456)
    state = torch.get_rng_state()
    z_b, img_b, loss_b = _run(decoder, perceptor, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # the step does not touch the global RNG
    assert torch.equal(z_a, z_b) and torch.equal(img_a, img_b) and loss_a == loss_b
    z_c, img_c, loss_c = _run(decoder, perceptor, seed=2)
    assert not torch.equal(z_a, z_c) and not torch.equal(img_a, img_c) and loss_a != loss_c


def test_step_image_is_from_latent_before_update(decoder, perceptor):
    stepper = Stepper(decoder, perceptor, StepConfig(**SMALL), _z0(decoder))
    before = stepper.image()
    result = stepper.step([_target()], seed=0, index=0)
    assert torch.equal(result.image, before)
    assert result.image.shape == (1, 3, 32, 32) and not result.image.requires_grad
    assert 0 <= result.image.min() and result.image.max() <= 1


def test_init_weight_term(decoder, perceptor):
    stepper = Stepper(decoder, perceptor, StepConfig(init_weight=2.0, init_weight_target="start", **SMALL),
                      _z0(decoder))
    first = stepper.step([_target()], seed=0, index=0)
    assert len(first.losses) == 2 and first.losses[0] == 0.0  # z == z_init on step 0
    moved = stepper.latent
    second = stepper.step([_target()], seed=1, index=1)
    expected = F.mse_loss(moved, stepper.z_init).item() * 2.0 / 2
    assert second.losses[0] == pytest.approx(expected, rel=1e-6) and expected > 0
    assert second.loss == pytest.approx(sum(second.losses), rel=1e-6)


def test_z_stays_within_codebook_bounds(decoder, perceptor):
    stepper = Stepper(decoder, perceptor, StepConfig(lr=5.0, **SMALL), _z0(decoder))
    lo, hi = z_bounds(decoder.codebook)
    for i in range(3):
        stepper.step([_target()], seed=i, index=i)
        z = stepper.latent
        assert torch.all(z >= lo) and torch.all(z <= hi)
    assert torch.any(z == lo) or torch.any(z == hi)  # lr 5 hits the walls: the clamp acted


def test_optimise_segment_carries_state(decoder, perceptor):
    config = StepConfig(**SMALL)
    z0, targets = _z0(decoder), [_target()]
    seen = []
    z_10, state_10 = optimise_segment(
        decoder, perceptor, config, z0, targets, 10, seed=9, on_step=lambda i, r: seen.append(i)
    )
    assert seen == list(range(10))
    z_5, state_5 = optimise_segment(decoder, perceptor, config, z0, targets, 5, seed=9)
    z_55, state_55 = optimise_segment(
        decoder, perceptor, config, z_5, targets, 5, seed=9, stepper_state=state_5, start_step=5
    )
    assert torch.equal(z_55, z_10)
    assert torch.equal(state_55["optimiser"]["state"][0]["exp_avg"], state_10["optimiser"]["state"][0]["exp_avg"])
    z_fresh, _ = optimise_segment(decoder, perceptor, config, z_5, targets, 5, seed=9, start_step=5)
    assert not torch.equal(z_fresh, z_10)  # without the Adam state the result differs


def test_first_step_targets_only_on_step_zero(decoder, perceptor):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prompt = embed_image_prompt(perceptor, image, torch.Generator().manual_seed(1), StepConfig(cutn=3, precision="fp32"))
    assert prompt.embed.shape == (3, EMBED_DIM)
    counts = []
    optimise_segment(
        decoder, perceptor, StepConfig(**SMALL), _z0(decoder), [_target()], 3, seed=0,
        on_step=lambda i, r: counts.append(len(r.losses)), first_step_targets=[prompt],
    )
    assert counts == [2, 1, 1]


def test_step_seed_fixed_formula():
    assert step_seed(1, 0, 0) == step_seed(1, 0, 0)
    seeds = {step_seed(1, 0, 0), step_seed(1, 0, 1), step_seed(1, 1, 0), step_seed(2, 0, 0)}
    assert len(seeds) == 4
    assert 0 <= step_seed(2**40, 3, 7) < 2**63
    assert step_seed(0, 0, 0) == 9044811311333822937  # pinned: changing it breaks old runs


def test_state_dict_round_trip(decoder, perceptor):
    config = StepConfig(**SMALL)
    a = Stepper(decoder, perceptor, config, _z0(decoder))
    for i in range(3):
        a.step([_target()], seed=i, index=i)
    saved = a.state_dict()
    b = Stepper(decoder, perceptor, config, _z0(decoder, seed=99))
    b.load_state_dict(saved)
    assert torch.equal(a.latent, b.latent) and torch.equal(a.z_init, b.z_init)
    ra, rb = a.step([_target()], seed=3, index=3), b.step([_target()], seed=3, index=3)
    assert ra.loss == rb.loss and torch.equal(a.latent, b.latent)
    assert not torch.equal(saved["z"], a.latent)  # the saved copy is not aliased


def test_bf16_gradient_matches_fp32(decoder, perceptor):
    grads = {}
    for precision in ("fp32", "bf16"):
        config = StepConfig(**{**SMALL, "precision": precision})
        stepper = Stepper(decoder, perceptor, config, _z0(decoder))
        stepper.step([_target()], seed=4, index=0)
        assert stepper.latent.dtype == torch.float32
        grads[precision] = stepper.z.grad.flatten()
    cos = F.cosine_similarity(grads["fp32"], grads["bf16"], dim=0).item()
    assert cos >= 0.99 and not torch.equal(grads["fp32"], grads["bf16"])


def test_no_targets_is_input_error(decoder, perceptor):
    stepper = Stepper(decoder, perceptor, StepConfig(**SMALL), _z0(decoder))
    with pytest.raises(InputError, match="prompt"):
        stepper.step([], seed=0, index=0)


# ---------------------------------------------------------------- initial latents


def test_random_latent_uses_codebook_rows(decoder):
    z = _z0(decoder)
    assert z.shape == (1, CHANNELS, 4, 4)
    rows = z.permute(0, 2, 3, 1).reshape(-1, CHANNELS)
    assert all(any(torch.equal(r, c) for c in decoder.codebook) for r in rows)
    assert torch.equal(z, _z0(decoder)) and not torch.equal(z, _z0(decoder, seed=6))


def test_noise_images_and_bounds():
    gen = torch.Generator().manual_seed(0)
    pixels = noise_image("pixels", (20, 12), gen)
    assert pixels.shape == (1, 3, 12, 20) and 0 <= pixels.min() and pixels.max() <= 254 / 255
    grad = noise_image("gradient", (20, 12), gen)
    assert grad.shape == (1, 3, 12, 20) and grad[0, 0, 0, 0] == 0 and grad[0, 1, 0, 0] == 0
    assert torch.all(grad[0, 0].diff(dim=1) >= 0) and torch.all(grad[0, 0].diff(dim=0) == 0)
    assert torch.all(grad[0, 1].diff(dim=1) == 0)  # green varies only top to bottom
    with pytest.raises(InputError):
        noise_image("plasma", (4, 4), gen)
    codebook = torch.tensor([[0.0, -1.0], [2.0, 1.0]])
    lo, hi = z_bounds(codebook)
    assert lo.shape == (1, 2, 1, 1) and lo.flatten().tolist() == [0.0, -1.0]
    z = torch.tensor([5.0, -5.0]).view(1, 2, 1, 1).requires_grad_(True)
    clamp_latent(z, lo, hi)
    assert z.flatten().tolist() == [2.0, -1.0] and z.requires_grad


# ---------------------------------------------------------------- colour jitter as kornia 0.5.4


def _rgb_to_hsv(rgb):
    """(N, 3, ...) in [0, 1] -> h in [0, 2 pi), s, v (the HSV model kornia 0.5.4 uses)."""
    import numpy as np

    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v = rgb.max(1)
    delta = v - rgb.min(1)
    s = np.where(v > 0, delta / np.where(v > 0, v, 1), 0.0)
    safe = np.where(delta > 0, delta, 1)
    h = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(delta > 0, h, 0.0) / 6 * 2 * np.pi
    return h, s, v


def _hsv_to_rgb(h, s, v):
    import numpy as np

    h6 = (h / (2 * np.pi)) * 6

    def channel(n: int):
        k = (n + h6) % 6
        return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)

    return np.stack([channel(5), channel(3), channel(1)], axis=1)


def _old_color_jitter(x, params):
    """kornia 0.5.4 ColorJitter restated in NumPy: each step in ``order``, on the selected samples."""
    import numpy as np

    out = x.copy()
    chosen = params["batch_prob"].numpy() > 0.5
    bf, cf, sf, hf = (params[k].numpy()[:, None, None] for k in
                      ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"))
    y = x[chosen]
    for step in params["order"].tolist():
        if step == 0:  # brightness: additive shift by (factor - 1)
            y = np.clip(y + (bf[chosen] - 1)[:, None], 0, 1)
        elif step == 1:  # contrast: scale
            y = np.clip(y * cf[chosen][:, None], 0, 1)
        elif step == 2:  # saturation: scale S in HSV
            h, s, v = _rgb_to_hsv(y)
            y = _hsv_to_rgb(h, np.clip(s * sf[chosen], 0, 1), v)
        else:  # hue: turn H by factor * 2 pi
            h, s, v = _rgb_to_hsv(y)
            y = _hsv_to_rgb(np.fmod(h + hf[chosen] * 2 * np.pi, 2 * np.pi), s, v)
    out[chosen] = y
    return out


def test_ji_is_kornia_054_color_jitter():
    """-aug Ji: additive brightness, multiplicative contrast, HSV saturation and hue (the originals' kornia)."""
    import numpy as np

    pipeline = build_augments(("Ji",), 8)
    import kornia.augmentation as K

    assert isinstance(pipeline[0], K.ColorJiggle)  # metamusic's ColourJiggle: kornia's, with a fast path
    batch = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    out = apply_augments(pipeline, batch, seed=1)
    params = pipeline[0]._params
    chosen = params["batch_prob"] > 0.5
    assert 0 < int(chosen.sum()) < 6  # p = 0.7: some samples jittered, some left alone
    for name, lo, hi in (("brightness_factor", 0.9, 1.1), ("contrast_factor", 0.9, 1.1),
                         ("saturation_factor", 0.9, 1.1), ("hue_factor", -0.1, 0.1)):
        assert params[name].min() >= lo and params[name].max() <= hi, name
    expected = _old_color_jitter(batch.double().numpy(), params)
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-5)
    assert not torch.allclose(out[chosen], batch[chosen], atol=1e-3)


# ---------------------------------------------------------------- -iw, fp16 scaler state, image prompts


def test_init_weight_zero_is_vqgan_clip_decaying_pull_to_zero(decoder, perceptor):
    """Default -iw: mse(z, 0) * iw / 2 / (2i + 1), i the step index within the segment."""
    config = StepConfig(init_weight=3.0, **SMALL)
    assert config.init_weight_target == "zero"
    stepper = Stepper(decoder, perceptor, config, _z0(decoder))
    z = stepper.latent
    first = stepper.step([_target()], seed=0, index=0)
    assert first.losses[0] == pytest.approx(z.pow(2).mean().item() * 3.0 / 2, rel=1e-6) and first.losses[0] > 0
    z = stepper.latent
    later = stepper.step([_target()], seed=1, index=4)
    assert later.losses[0] == pytest.approx(z.pow(2).mean().item() * 3.0 / 2 / 9, rel=1e-6)
    # The gradient of the term alone is the pull toward zero: 2 z / numel * iw / 2 / (2i + 1).
    alone = Stepper(decoder, perceptor, config, _z0(decoder))
    alone.z.grad = None
    from metamusic.optim.stepper import init_term

    init_term(alone.z, alone.z_init, config, 2).backward()
    torch.testing.assert_close(alone.z.grad, alone.z.detach() * 2 / alone.z.numel() * 3.0 / 2 / 5)
    with pytest.raises(InputError, match="index"):
        stepper.step([_target()], seed=2, index=-1)


def test_init_weight_target_start_keeps_the_constant_pull_to_the_start(decoder, perceptor):
    stepper = Stepper(decoder, perceptor, StepConfig(init_weight=2.0, init_weight_target="start", **SMALL),
                      _z0(decoder))
    first = stepper.step([_target()], seed=0, index=0)
    assert len(first.losses) == 2 and first.losses[0] == 0.0  # z == z_init on step 0
    moved = stepper.latent
    second = stepper.step([_target()], seed=1, index=7)  # no decay with the index
    assert second.losses[0] == pytest.approx(F.mse_loss(moved, stepper.z_init).item(), rel=1e-6)
    with pytest.raises(InputError, match="init weight target"):
        StepConfig(init_weight_target="origin")


def test_fp16_scaler_state_carries_from_segment_to_segment(decoder, perceptor):
    config = StepConfig(cutn=2, precision="fp16", lr=0.1)
    z0, targets = _z0(decoder), [_target()]
    z_10, state_10 = optimise_segment(decoder, perceptor, config, z0, targets, 10, seed=9)
    z_5, state_5 = optimise_segment(decoder, perceptor, config, z0, targets, 5, seed=9)
    assert set(state_5) == {"optimiser", "scaler"} and state_5["scaler"]["_growth_tracker"] == 5
    z_55, state_55 = optimise_segment(decoder, perceptor, config, z_5, targets, 5, seed=9,
                                      stepper_state=state_5, start_step=5)
    assert torch.equal(z_55, z_10) and state_55["scaler"] == state_10["scaler"]
    # A loss scale that backed off in one segment stays backed off in the next.
    state = {**state_5, "scaler": {**state_5["scaler"], "scale": 1024.0}}
    _, after = optimise_segment(decoder, perceptor, config, z_5, targets, 1, seed=9, stepper_state=state,
                                start_step=5)
    assert after["scaler"]["scale"] == 1024.0 and after["scaler"]["_growth_tracker"] == 6
    # fp32 has no scaler; a bare optimiser state dict (older run folders) is still accepted.
    fp32 = StepConfig(**SMALL)
    _, plain = optimise_segment(decoder, perceptor, fp32, z0, targets, 2, seed=9)
    assert plain["scaler"] is None
    optimise_segment(decoder, perceptor, fp32, z0, targets, 1, seed=9, stepper_state=plain["optimiser"], start_step=2)


def test_image_prompt_is_embedded_through_the_steps_cutouts(decoder, perceptor):
    """-ip as VQGAN-CLIP: one embedding per cut-out, with the step's augments and noise."""
    from metamusic.optim.stepper import Stepper as _Stepper

    config = StepConfig(cutn=5, precision="fp32")
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    prompt = embed_image_prompt(perceptor, image, torch.Generator().manual_seed(1), config, weight=0.5)
    assert prompt.embed.shape == (5, EMBED_DIM) and prompt.weight == 0.5
    assert not torch.allclose(prompt.embed[0], prompt.embed[1])  # augments and noise differ per cut-out
    stepper = _Stepper(decoder, perceptor, config, _z0(decoder))
    with torch.no_grad():
        same = stepper._embed(stepper._cutouts(image, torch.Generator().manual_seed(1)))
    torch.testing.assert_close(prompt.embed, F.normalize(same, dim=-1))
    plain = embed_image_prompt(perceptor, image, torch.Generator().manual_seed(1),
                               StepConfig(cutn=5, augments=(), noise_fac=0.0, precision="fp32"))
    assert torch.allclose(plain.embed[0], plain.embed[4])  # no augments, no noise: identical pooled cut-outs
    assert not torch.allclose(plain.embed[0], prompt.embed[0], atol=1e-4)


def test_image_prompt_size_is_vqgan_clip_resize_image():
    from metamusic.optim import image_prompt_size

    assert image_prompt_size((1000, 500), (32, 32)) == (45, 23)  # aspect kept, output area
    assert image_prompt_size((64, 64), (256, 128)) == (64, 64)  # a smaller image keeps its own area
    assert image_prompt_size((300, 200), (300, 200)) == (300, 200)
    with pytest.raises(InputError):
        image_prompt_size((0, 10), (32, 32))


def test_step_config_type_errors_are_one_line_input_errors():
    for bad in ({"cutn": "8"}, {"lr": "0.1"}, {"compile": "yes"}, {"cut_method": 3}, {"cutn": True}):
        with pytest.raises(InputError) as info:
            StepConfig(**bad)
        assert "\n" not in str(info.value) and next(iter(bad)) in str(info.value)
    assert StepConfig(augments=["Af", "Ji"]).augments == ("Af", "Ji")  # a YAML list comes back as a tuple
