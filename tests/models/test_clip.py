"""CLIP loader: equality with open_clip's OpenAI loading, archive layout, trust rules, formats."""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
import zipfile
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.model import (
    CLIP,
    CLIPTextCfg,
    CLIPVisionCfg,
    build_model_from_openai_state_dict,
)

from metamusic.errors import CheckpointError
from metamusic.models import clip as clip_mod
from metamusic.models import clip_tower
from metamusic.models.clip import (
    ClipArchitecture,
    Perceptor,
    available_models,
    convert_to_safetensors,
    infer_architecture,
    load_clip,
    sha256_of,
)
from metamusic.tiny.clip import TINY_CLIP, write_tiny_clip

TEXTS = ["a red apple on a table", "hello world", "x"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"), seed=0)


@pytest.fixture(scope="module")
def perceptor(tiny) -> Perceptor:
    return load_clip(str(tiny["clip"]), trust_torchscript=True)


@pytest.fixture(scope="module")
def reference(tiny) -> torch.nn.Module:
    """open_clip's own OpenAI loading of the same archive (QuickGELU, fp32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return open_clip.load_openai_model(str(tiny["clip"]), precision="fp32", device="cpu").eval()


def images(seed: int, n: int = 2, size: int = TINY_CLIP.image_size) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))  # (B, 3, R, R)


def jit_state_dict(path: Path) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").state_dict()


def official_vit_keys(vision_layers: int, text_layers: int) -> set[str]:
    """Key set of an OpenAI ViT archive (as in ViT-B-32.pt) for the given layer counts."""
    block = [
        "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
        "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
        "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias",
    ]  # fmt: skip
    keys = {
        "visual.class_embedding", "visual.positional_embedding", "visual.proj", "visual.conv1.weight",
        "visual.ln_pre.weight", "visual.ln_pre.bias", "visual.ln_post.weight", "visual.ln_post.bias",
        "positional_embedding", "text_projection", "logit_scale", "token_embedding.weight",
        "ln_final.weight", "ln_final.bias", "input_resolution", "context_length", "vocab_size",
    }  # fmt: skip
    keys |= {f"visual.transformer.resblocks.{i}.{b}" for i in range(vision_layers) for b in block}
    keys |= {f"transformer.resblocks.{i}.{b}" for i in range(text_layers) for b in block}
    return keys


# ---------------------------------------------------------------- equality with open_clip


def test_archive_matches_open_clip_openai_loading(perceptor, reference):
    x = perceptor.normalize(images(1))
    with torch.no_grad():
        ours_img = perceptor.encode_image(x)
        ref_img = reference.encode_image(x)
        ours_txt = perceptor.encode_text(TEXTS)
        ref_txt = reference.encode_text(open_clip.tokenize(TEXTS))
    assert ours_img.shape == (2, TINY_CLIP.embed_dim) and ours_txt.shape == (3, TINY_CLIP.embed_dim)
    assert ours_img.dtype == torch.float32
    assert ours_img.abs().mean() > 0.1 and ours_txt.abs().mean() > 0.1  # not degenerate
    torch.testing.assert_close(ours_img, ref_img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_txt, ref_txt, atol=1e-5, rtol=1e-5)
    # Texts and images are told apart (a broken pooling would give equal rows).
    assert (ours_txt[0] - ours_txt[1]).abs().max() > 1e-3


def test_state_dict_variant_matches_build_from_openai_state_dict(tiny, perceptor):
    ours = load_clip(str(tiny["clip_state_dict"]))
    state = torch.load(tiny["clip_state_dict"], map_location="cpu", weights_only=True)
    ref = build_model_from_openai_state_dict(dict(state), quick_gelu=True, cast_dtype=None).float().eval()
    x = ours.normalize(images(2))
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(x), ref.encode_image(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            ours.encode_text(TEXTS), ref.encode_text(open_clip.tokenize(TEXTS)), atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(ours.encode_image(x), perceptor.encode_image(x), atol=0, rtol=0)


def test_quick_gelu_flag_changes_the_model(tiny, perceptor):
    plain = load_clip(str(tiny["clip_state_dict"]), quick_gelu=False)
    x = perceptor.normalize(images(3))
    with torch.no_grad():
        assert (plain.encode_image(x) - perceptor.encode_image(x)).abs().max() > 1e-4


def test_perceptor_fields_frozen_fp32(perceptor):
    assert perceptor.input_resolution == TINY_CLIP.image_size
    assert perceptor.embed_dim == TINY_CLIP.embed_dim
    assert perceptor.context_length == 77
    assert not perceptor.model.training
    params = list(perceptor.model.parameters())
    assert params and all(not p.requires_grad and p.dtype == torch.float32 for p in params)
    torch.testing.assert_close(perceptor.mean, torch.tensor(clip_mod.CLIP_MEAN))
    x = torch.full((1, 3, 4, 4), 0.5)
    expected = (0.5 - torch.tensor(clip_mod.CLIP_MEAN)) / torch.tensor(clip_mod.CLIP_STD)
    torch.testing.assert_close(perceptor.normalize(x)[0, :, 2, 2], expected)


def test_gradient_flows_to_images_and_autocast_works(perceptor):
    x = images(4).requires_grad_(True)
    perceptor.encode_image(perceptor.normalize(x)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = perceptor.encode_image(perceptor.normalize(images(4)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_encode_image_rejects_wrong_size(perceptor):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        perceptor.encode_image(images(0, size=48))


# ---------------------------------------------------------------- archive layout


def test_tiny_archive_key_set_is_the_official_one(tiny):
    state = jit_state_dict(tiny["clip"])
    assert set(state) == official_vit_keys(TINY_CLIP.vision_layers, TINY_CLIP.text_layers)
    assert "attn_mask" not in state
    assert int(state["input_resolution"]) == 32 and int(state["context_length"]) == 77
    assert int(state["vocab_size"]) == 49408
    assert state["token_embedding.weight"].shape == (49408, 64)
    # OpenAI stores linear/conv weights and projections in fp16, embeddings and norms in fp32.
    assert state["visual.conv1.weight"].dtype == torch.float16
    assert state["text_projection"].dtype == torch.float16
    assert state["ln_final.weight"].dtype == torch.float32
    with zipfile.ZipFile(tiny["clip"]) as archive:
        assert any(n.endswith("constants.pkl") for n in archive.namelist())  # real TorchScript


def test_tiny_writer_is_deterministic_in_seed(tmp_path, tiny):
    again = write_tiny_clip(tmp_path / "a", seed=0)
    other = write_tiny_clip(tmp_path / "b", seed=1)
    s0, s0b, s1 = (jit_state_dict(p["clip"]) for p in (tiny, again, other))
    assert all(torch.equal(s0[k], s0b[k]) for k in s0)
    assert not torch.equal(s0["visual.proj"], s1["visual.proj"])


def test_infer_architecture_vit(tiny):
    assert infer_architecture(jit_state_dict(tiny["clip"])) == TINY_CLIP


def test_infer_architecture_modified_resnet_and_load(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rn = CLIP(
            32,
            CLIPVisionCfg(layers=(1, 2, 1, 1), width=8, image_size=64),
            CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
            quick_gelu=True,
        ).eval()
    state = rn.state_dict()
    arch = infer_architecture(state)
    assert arch == ClipArchitecture(
        embed_dim=32, image_size=64, vision_layers=(1, 2, 1, 1), vision_width=8, vision_patch_size=None,
        vision_mlp_ratio=4.0, context_length=77, vocab_size=49408, text_width=64, text_heads=1,
        text_layers=1, text_mlp_ratio=4.0,
    )  # fmt: skip
    path = tmp_path / "rn.pt"
    torch.save(state, path)
    ours = load_clip(str(path))
    x = ours.normalize(images(5, size=64))
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(x), rn.encode_image(x), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- trust rules


def test_untrusted_archive_is_refused_with_a_clear_message(tiny):
    with pytest.raises(CheckpointError) as info:
        load_clip(str(tiny["clip"]))
    message = str(info.value)
    assert "\n" not in message and str(tiny["clip"]) in message
    assert "TorchScript" in message and "SHA-256" in message and "--trust_torchscript" in message


def test_published_hash_is_accepted_without_flag(tiny, monkeypatch, perceptor):
    monkeypatch.setitem(clip_mod.OPENAI_SHA256, "tiny", sha256_of(tiny["clip"]))
    loaded = load_clip(str(tiny["clip"]))
    x = loaded.normalize(images(6))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(x), perceptor.encode_image(x), atol=0, rtol=0)


def test_sha256_matches_hashlib_and_is_cached(tmp_path, monkeypatch):
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"metamusic" * 1000)
    assert sha256_of(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    sha256_of(path)
    assert calls == []  # cached by (path, size, mtime)
    path.write_bytes(b"changed!" * 1000)
    os.utime(path, ns=(1, 1))
    assert sha256_of(path) == real(b"changed!" * 1000).hexdigest() and calls == [1]


# ---------------------------------------------------------------- safetensors


def test_safetensors_round_trip_weights_only(tiny, tmp_path, perceptor, monkeypatch):
    dst = convert_to_safetensors(tiny["clip"], tmp_path / "tiny.safetensors", trust_torchscript=True)
    assert dst.is_file() and not list(tmp_path.glob("*.tmp"))

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle/TorchScript loading used for a safetensors file")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.jit, "load", forbidden)
    loaded = load_clip(str(dst))
    x = loaded.normalize(images(7))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(x), perceptor.encode_image(x), atol=0, rtol=0)
        torch.testing.assert_close(loaded.encode_text(TEXTS), perceptor.encode_text(TEXTS), atol=0, rtol=0)


def test_conversion_refuses_untrusted_archive(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="TorchScript"):
        convert_to_safetensors(tiny["clip"], tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())


def test_openai_name_prefers_safetensors(tiny, tmp_path, monkeypatch):
    (tmp_path / "ViT-B-32.pt").write_bytes(tiny["clip"].read_bytes())  # untrusted: would be refused
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_clip("ViT-B/32", checkpoints_dir=tmp_path)
    convert_to_safetensors(tiny["clip"], tmp_path / "ViT-B-32.safetensors", trust_torchscript=True)
    for name in ("ViT-B/32", "ViT-B-32"):
        assert load_clip(name, checkpoints_dir=tmp_path).input_resolution == 32
    assert available_models() == ["ViT-B/32", "ViT-B/16", "RN50"]


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_offline_and_long_text_truncated_with_warning(perceptor, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokens = perceptor.tokenize(["hello world"])
    assert tokens.dtype == torch.long and tokens.shape == (1, 77)
    assert tokens[0, 0] == 49406 and tokens[0, 3] == 49407 and tokens[0, 4:].eq(0).all()
    torch.testing.assert_close(tokens, open_clip.tokenize(["hello world"]))
    long_text = "la " * 120
    with pytest.warns(UserWarning, match=r"text 'la la la la la la la la la la la la la l' is 122 tokens"):
        long_tokens = perceptor.tokenize([long_text, "short"])
    assert long_tokens.shape == (2, 77) and long_tokens[0, -1] == 49407 and long_tokens[0].argmax() == 76
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perceptor.tokenize([long_text])  # warned once per text
        out = perceptor.encode_text([long_text])
    assert out.shape == (1, TINY_CLIP.embed_dim) and torch.isfinite(out).all()


# ---------------------------------------------------------------- file errors


def test_missing_file_names_file_and_download_command(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_clip("ViT-B/16", checkpoints_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "ViT-B-16.pt") in message
    assert "bash download_models.sh clip_vit_b16" in message and "\n" not in message
    with pytest.raises(CheckpointError, match=r"nope\.pt.*not found"):
        load_clip(str(tmp_path / "nope.pt"))


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("page.pt", b"<!DOCTYPE html><html>dead link</html>", "HTML page"),
        ("empty.pt", b"", "empty"),
        ("junk.safetensors", b"\x00\x01 not a safetensors file", "not a valid safetensors"),
        ("notes.pt", b"just some text, not a checkpoint", "corrupt|could not be read"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_clip(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_archive_and_wrong_state_dict(tiny, tmp_path):
    data = tiny["clip"].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        load_clip(str(cut), trust_torchscript=True)
    other = tmp_path / "other.pt"
    torch.save({"encoder.conv_in.weight": torch.zeros(2, 3, 3, 3)}, other)
    with pytest.raises(CheckpointError, match="not an OpenAI-layout CLIP"):
        load_clip(str(other))
    state = torch.load(tiny["clip_state_dict"], weights_only=True)
    del state["ln_final.bias"]
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\) e\.g\. ln_final\.bias"):
        load_clip(str(broken))


def test_fast_image_tower_equals_encode_image_with_gradients(perceptor):
    assert clip_tower.fast_vit_supported(perceptor.model.visual)
    x = images(seed=21, n=3)
    results = []
    for encode in (perceptor.encode_image, perceptor.encode_image_fast):
        xx = x.clone().requires_grad_(True)
        out = encode(xx)
        out.square().sum().backward()
        results.append((out.detach(), xx.grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    # Gradients reach ~5: fp32 rounding differs by a few 1e-6 (both sides equally far from fp64).
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-5)
    assert results[0][1].abs().sum() > 0
    with pytest.raises(ValueError, match="expects images"):
        perceptor.encode_image_fast(torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------- fast image tower parts

# Two 64-wide heads and a 3x3 grid of 8-pixel patches: catches head or patch-order mix-ups the
# one-head, 2x2-grid TINY_CLIP could hide.
TWO_HEADS = dataclasses.replace(TINY_CLIP, vision_width=128, vision_patch_size=8, image_size=24)


@pytest.fixture(scope="module")
def two_heads() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = clip_mod.build_clip(TWO_HEADS)
        for param in model.visual.parameters():  # open_clip zero-inits some biases and LN shifts
            param.data.add_(0.05 * torch.randn_like(param))
    model = model.float().eval().requires_grad_(False)
    assert model.visual.transformer.resblocks[0].attn.num_heads == 2
    return model


def test_fast_tower_equals_open_clip_forward_and_input_gradient_two_heads(two_heads):
    visual = two_heads.visual
    assert clip_tower.fast_vit_supported(visual)
    x = images(seed=22, n=3, size=TWO_HEADS.image_size)
    results = []
    for encode in (two_heads.encode_image, lambda xx: clip_tower.vit_image_features(visual, xx)):
        xx = x.clone().requires_grad_(True)
        out = encode(xx)
        out.square().sum().backward()
        results.append((out.detach(), xx.grad))
    assert results[0][0].abs().mean() > 0.1 and results[0][1].abs().mean() > 1e-3  # not degenerate
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-5)


def test_quick_gelu_backward_is_autograds_of_open_clips_quick_gelu():
    from open_clip.transformer import QuickGELU

    x = torch.randn(3, 5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(25)) * 3
    assert torch.autograd.gradcheck(clip_tower._QuickGELU.apply, (x.clone().requires_grad_(True),))
    grads = []
    for fn in (QuickGELU(), clip_tower._QuickGELU.apply):
        xx = x.clone().requires_grad_(True)
        out = fn(xx)
        out.backward(torch.cos(x))
        grads.append((out.detach(), xx.grad))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-12)


def test_fast_tower_runs_quick_gelu_through_its_own_backward(two_heads, monkeypatch):
    calls = []
    real = clip_tower._QuickGELU.apply
    monkeypatch.setattr(clip_tower._QuickGELU, "apply", lambda x: calls.append(x.shape) or real(x))
    x = images(seed=26, n=2, size=TWO_HEADS.image_size)
    clip_tower.vit_image_features(two_heads.visual, x)  # no gradient: open_clip's module
    assert calls == []
    clip_tower.vit_image_features(two_heads.visual, x.requires_grad_(True))
    assert len(calls) == len(two_heads.visual.transformer.resblocks)


def test_fast_tower_runs_the_last_blocks_mlp_for_the_class_token_only(two_heads):
    visual = two_heads.visual
    blocks = visual.transformer.resblocks
    assert len(blocks) >= 2
    rows = []
    hooks = [b.mlp.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[1])) for b in blocks]
    try:
        clip_tower.vit_image_features(visual, images(seed=24, n=2, size=TWO_HEADS.image_size))
    finally:
        for hook in hooks:
            hook.remove()
    tokens = 1 + (TWO_HEADS.image_size // TWO_HEADS.vision_patch_size) ** 2
    assert rows == [tokens] * (len(blocks) - 1) + [1]


@pytest.mark.parametrize("which", ["tiny", "two_heads"])
def test_patch_embeds_equals_open_clip_embeds_without_calling_it(which, perceptor, two_heads, monkeypatch):
    visual = perceptor.model.visual if which == "tiny" else two_heads.visual
    assert clip_tower._is_patchify_conv(visual.conv1)
    x = images(seed=23, n=2, size=visual.image_size[0]).requires_grad_(True)
    expected = visual._embeds(x)  # (B, 1 + grid**2, W)
    grad_expected, = torch.autograd.grad(expected.square().sum(), x)

    def no_conv(_x):
        raise AssertionError("the patch embedding fell back to the convolution")

    monkeypatch.setattr(visual, "_embeds", no_conv)
    ours = clip_tower.patch_embeds(visual, x)
    grad_ours, = torch.autograd.grad(ours.square().sum(), x)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_ours, grad_expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change", ["bias", "padding"])
def test_patch_embeds_falls_back_to_the_convolution(change, perceptor):
    visual = copy.deepcopy(perceptor.model.visual)
    old = visual.conv1
    p = old.kernel_size[0]
    conv = torch.nn.Conv2d(3, old.out_channels, p, stride=p, bias=change == "bias",
                           padding=1 if change == "padding" else 0)  # 32 px, padding 1: still a 2x2 grid
    conv.weight.data.copy_(old.weight)
    if conv.bias is not None:
        conv.bias.data.copy_(torch.linspace(-1, 1, old.out_channels))
    visual.conv1 = conv.requires_grad_(False)
    assert not clip_tower._is_patchify_conv(visual.conv1)
    x = images(seed=24, n=2)
    with torch.no_grad():
        ours = clip_tower.patch_embeds(visual, x)
        expected = visual._embeds(x)
        as_patches = clip_tower.patch_embeds(perceptor.model.visual, x)  # same weight, no bias/padding
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    assert (expected - as_patches).abs().max() > 1e-2  # the change matters: patches would be wrong


def test_is_patchify_conv_rejects_other_convolutions():
    assert clip_tower._is_patchify_conv(torch.nn.Conv2d(3, 8, 4, stride=4, bias=False))
    assert clip_tower._is_patchify_conv(torch.nn.Conv2d(3, 8, (4, 2), stride=(4, 2), bias=False))
    for conv in (
        torch.nn.Conv2d(3, 8, 4, stride=2, bias=False),
        torch.nn.Conv2d(3, 8, 4, stride=4, bias=False, dilation=2),
        torch.nn.Conv2d(3, 6, 4, stride=4, bias=False, groups=3),
        torch.nn.Conv2d(3, 8, 4, stride=4, bias=False, padding=1),
        torch.nn.Conv1d(3, 8, 4, stride=4, bias=False),
    ):
        assert not clip_tower._is_patchify_conv(conv), conv


def test_cpu_attention_equals_sdpa_values_and_gradients():
    g = torch.Generator().manual_seed(25)
    q, k, v = (torch.randn(2, 3, 7, 16, generator=g) * s for s in (2.0, 2.0, 1.0))  # (B, H, L, d)
    results = []
    for attend in (torch.nn.functional.scaled_dot_product_attention, clip_tower._attention):
        qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
        out = attend(qq, kk, vv)
        out.square().sum().backward()
        results.append((out.detach(), qq.grad, kk.grad, vv.grad))
    for ours, expected in zip(results[1], results[0]):
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = clip_tower._attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), results[0][0], rtol=0, atol=0.05)


def test_attention_uses_sdpa_off_cpu_only(monkeypatch):
    calls = []

    def spy(q, k, v):
        calls.append(q.device.type)
        return v

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    clip_tower._attention(*(torch.zeros(1, 1, 3, 4, device="meta") for _ in range(3)))
    clip_tower._attention(*(torch.zeros(1, 1, 3, 4) for _ in range(3)))
    assert calls == ["meta"]
