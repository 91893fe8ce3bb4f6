"""VQGAN: equality with taming-transformers' modules, safe .ckpt loading, clear errors."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from metamusic.errors import CheckpointError
from metamusic.models.checkpoint_io import load_weights
from metamusic.models.vqgan import (
    NET2NET_TARGET,
    VQGAN,
    Decoder,
    Encoder,
    GumbelQuantizer,
    Upsample,
    VectorQuantizer,
    VQGANConfig,
    folded_upsample_weight,
)
from metamusic.models.vqgan_loader import (
    LIGHTNING_CHECKPOINT_CALLBACK,
    LightningModelCheckpointStandIn,
    load_vqgan,
    read_vqgan_config,
)
from metamusic.tiny.vqgan import tiny_vqgan_config, write_tiny_vqgan


def _reference(module: str):
    """A module of the test-only taming reference; without it only the comparisons skip."""
    return pytest.importorskip(module, reason="the taming reference is not installed (pip install --no-deps -r "
                                               "requirements-test.txt): comparison with taming skipped")

# Two res blocks per level (attention indexing), widths 32/64 (nin_shortcut), attention at 16 and 8.
REF_CONFIG = VQGANConfig(
    embed_dim=8, n_embed=32, z_channels=8, ch=32, ch_mult=(1, 2, 2), num_res_blocks=2,
    attn_resolutions=(16, 8), resolution=32,
)
F16_16384 = {
    "model": {
        "target": "taming.models.vqgan.VQModel",
        "params": {
            "embed_dim": 256, "n_embed": 16384,
            "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3,
                         "out_ch": 3, "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2,
                         "attn_resolutions": [16], "dropout": 0.0},
            "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"},
        },
    }
}


def _randomize_(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter moderate random values (GroupNorm affines not at 1/0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim >= 2:
                p.copy_(noise / p[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def _ref_dd(config: VQGANConfig) -> dict:
    return config.to_taming_params()["ddconfig"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return write_tiny_vqgan(tmp_path_factory.mktemp("tiny_vqgan"), seed=0)


@pytest.fixture(scope="module")
def tiny_model(tiny) -> VQGAN:
    return load_vqgan(tiny["vqgan_config"], tiny["vqgan_checkpoint"])


# --- ours equals the reference on identical weights -------------------------------------------


def test_encoder_decoder_equal_taming():
    ref_model = _reference("taming.modules.diffusionmodules.model")
    gen = torch.Generator().manual_seed(1)
    ref_enc = ref_model.Encoder(**_ref_dd(REF_CONFIG)).eval()
    ref_dec = ref_model.Decoder(**_ref_dd(REF_CONFIG)).eval()
    _randomize_(ref_enc, 2)
    _randomize_(ref_dec, 3)
    enc, dec = Encoder(REF_CONFIG).eval(), Decoder(REF_CONFIG).eval()
    enc.load_state_dict(ref_enc.state_dict(), strict=True)
    dec.load_state_dict(ref_dec.state_dict(), strict=True)

    x = torch.rand(2, 3, 32, 24, generator=gen) * 2 - 1  # non-square on purpose
    z = torch.randn(2, 8, 6, 10, generator=gen)
    with torch.no_grad():
        h_ref, h = ref_enc(x), enc(x)
        y_ref, y = ref_dec(z), dec(z)
    assert h.shape == (2, 8, 8, 6) and y.shape == (2, 3, 24, 40)
    assert h.std() > 0.1 and y.std() > 0.1
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


def test_vector_quantizer_equals_taming_nearest_code():
    ref_quantize = _reference("taming.modules.vqvae.quantize")
    gen = torch.Generator().manual_seed(4)
    ref = ref_quantize.VectorQuantizer2(32, 8, beta=0.25).eval()
    _randomize_(ref, 5)
    ours = VectorQuantizer(32, 8)
    ours.load_state_dict(ref.state_dict(), strict=True)
    z = torch.randn(2, 8, 5, 7, generator=gen)
    with torch.no_grad():
        z_ref, _, (_, _, idx_ref) = ref(z)
    torch.testing.assert_close(ours(z), z_ref, atol=1e-5, rtol=1e-5)
    assert idx_ref.unique().numel() > 3  # many different codes were compared


def test_gumbel_pipeline_equals_taming_hard_codes():
    ref_model = _reference("taming.modules.diffusionmodules.model")
    ref_quantize = _reference("taming.modules.vqvae.quantize")
    config = VQGANConfig(**{**REF_CONFIG.__dict__, "gumbel": True})
    gen = torch.Generator().manual_seed(6)
    ref_enc = ref_model.Encoder(**_ref_dd(config)).eval()
    ref_dec = ref_model.Decoder(**_ref_dd(config)).eval()
    ref_q = ref_quantize.GumbelQuantize(8, 8, n_embed=32).eval()
    quant_conv, post_quant_conv = torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(8, 8, 1)
    for i, m in enumerate((ref_enc, ref_dec, ref_q, quant_conv, post_quant_conv)):
        _randomize_(m, 10 + i)
    ref_state = {
        **{f"encoder.{k}": v for k, v in ref_enc.state_dict().items()},
        **{f"decoder.{k}": v for k, v in ref_dec.state_dict().items()},
        **{f"quantize.{k}": v for k, v in ref_q.state_dict().items()},
        **{f"quant_conv.{k}": v for k, v in quant_conv.state_dict().items()},
        **{f"post_quant_conv.{k}": v for k, v in post_quant_conv.state_dict().items()},
    }
    ours = VQGAN(config).eval()
    ours.load_state_dict(ref_state, strict=True)
    assert isinstance(ours.quantize, GumbelQuantizer) and ours.is_gumbel
    assert ours.codebook is ours.quantize.embed.weight

    x = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    with torch.no_grad():
        h = quant_conv(ref_enc(x))  # (1, 8, 8, 8)
        codes = ref_q.proj(h).argmax(1)  # noise-free hard codes
        z_ref = ref_q.get_codebook_entry(codes.flatten(), (1, 8, 8, 8))
        y_ref = ref_dec(post_quant_conv(z_ref))
        z = ours.encode(x)
        y = ours.decode(z)
    assert codes.unique().numel() > 3
    torch.testing.assert_close(z, z_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)

    # taming's eval mode samples Gumbel noise; with well separated logits it picks the argmax too.
    with torch.no_grad():
        ref_q.proj.weight.mul_(1e4)
        ours.quantize.proj.weight.mul_(1e4)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            z_sampled, _, _ = ref_q(h)
        torch.testing.assert_close(ours.quantize(h), z_sampled, atol=1e-5, rtol=1e-5)


# --- the tiny checkpoint and the loader --------------------------------------------------------


class _BlockLightning(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pytorch_lightning" or name.startswith("pytorch_lightning."):
            raise ImportError(f"{name} is blocked in this test")
        return None


def test_tiny_ckpt_loads_without_lightning(tiny, monkeypatch):
    for name in [n for n in sys.modules if n.split(".")[0] == "pytorch_lightning"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BlockLightning(), *sys.meta_path])
    with pytest.raises(ImportError):
        importlib.util.find_spec("pytorch_lightning")

    ckpt = tiny["vqgan_checkpoint"]
    # The file really pickles Lightning's callback class, as the official checkpoints do ...
    assert LIGHTNING_CHECKPOINT_CALLBACK in torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt))
    with pytest.raises(Exception):
        torch.load(ckpt, weights_only=True)
    # ... and still loads, with weights equal to those saved.
    model = load_vqgan(tiny["vqgan_config"], ckpt)
    saved = load_weights(ckpt, "ckpt", "", aliases=[(LightningModelCheckpointStandIn, LIGHTNING_CHECKPOINT_CALLBACK)])
    assert saved["pytorch-lightning_version"] == "1.0.8"
    expected = {k: v for k, v in saved["state_dict"].items() if not k.startswith("loss.")}
    assert any(k.startswith("loss.") for k in saved["state_dict"])
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert "pytorch_lightning" not in sys.modules


def test_tiny_config_round_trip_and_determinism(tiny, tmp_path):
    config = read_vqgan_config(tiny["vqgan_config"])
    assert config == tiny_vqgan_config()
    assert config.factor == 4 and config.attn_resolutions == (8,)
    raw = yaml.safe_load(tiny["vqgan_config"].read_text())
    assert raw["model"]["params"]["lossconfig"]["target"].endswith("VQLPIPSWithDiscriminator")

    again = write_tiny_vqgan(tmp_path / "a", seed=0)
    other = write_tiny_vqgan(tmp_path / "b", seed=1)
    gumbel = write_tiny_vqgan(tmp_path / "c", seed=0, gumbel=True)
    a = load_vqgan(again["vqgan_config"], again["vqgan_checkpoint"]).state_dict()
    b = load_vqgan(other["vqgan_config"], other["vqgan_checkpoint"]).state_dict()
    ref = load_vqgan(tiny["vqgan_config"], tiny["vqgan_checkpoint"]).state_dict()
    assert all(torch.equal(a[k], ref[k]) for k in ref)
    assert not torch.equal(a["decoder.conv_out.weight"], b["decoder.conv_out.weight"])
    g = load_vqgan(gumbel["vqgan_config"], gumbel["vqgan_checkpoint"])
    assert g.is_gumbel and g.codebook.shape == (64, 8)
    assert "pytorch_lightning" not in sys.modules  # the writer cleaned up its stand-in


def test_unknown_global_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"

    class Payload:
        def __init__(self, target: str):
            Path(target).touch()  # what an attacker's code would do on unpickling

        def __reduce__(self):
            return (Payload, (self.target,))

    Payload.__module__, Payload.__qualname__ = "evil", "Payload"
    evil = types.ModuleType("evil")
    evil.Payload = Payload
    monkeypatch.setitem(sys.modules, "evil", evil)  # importable: a plain load WOULD run it
    payload = object.__new__(Payload)
    payload.target = str(marker)
    bad = tmp_path / "vqgan_imagenet_f16_16384.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": payload}, bad)
    assert not marker.exists()

    tiny_cfg = write_tiny_vqgan(tmp_path / "cfg")["vqgan_config"]
    with pytest.raises(CheckpointError) as err:
        load_vqgan(tiny_cfg, bad)
    msg = str(err.value)
    assert "evil.Payload" in msg and str(bad) in msg and "\n" not in msg
    assert not marker.exists()


def _one_line_error(config: Path, ckpt: Path) -> str:
    with pytest.raises(CheckpointError) as err:
        load_vqgan(config, ckpt)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_files_say_how_to_download(tiny, tmp_path):
    missing = tmp_path / "checkpoints" / "vqgan_imagenet_f16_16384.ckpt"
    msg = _one_line_error(tiny["vqgan_config"], missing)
    assert str(missing) in msg and "bash download_models.sh vqgan_imagenet_f16_16384" in msg

    msg = _one_line_error(tiny["vqgan_config"], tmp_path / "mine.ckpt")
    assert "mine.ckpt" in msg and "download_models.sh" in msg

    msg = _one_line_error(tmp_path / "vqgan_gumbel_f8_8192.yaml", tiny["vqgan_checkpoint"])
    assert "vqgan_gumbel_f8_8192.yaml" in msg and "bash download_models.sh vqgan_gumbel_f8_8192" in msg


def test_html_truncated_and_foreign_checkpoints(tiny, tmp_path):
    html = tmp_path / "vqgan_imagenet_f16_16384.ckpt"
    html.write_text("<!DOCTYPE html><html><body>Share link expired</body></html>")
    msg = _one_line_error(tiny["vqgan_config"], html)
    assert str(html) in msg and "HTML" in msg

    data = tiny["vqgan_checkpoint"].read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    msg = _one_line_error(tiny["vqgan_config"], cut)
    assert str(cut) in msg and "truncated" in msg

    raw = yaml.safe_load(tiny["vqgan_config"].read_text())
    raw["model"]["params"]["ddconfig"]["ch"] = 64
    wide = tmp_path / "wide.yaml"
    wide.write_text(yaml.safe_dump(raw))
    msg = _one_line_error(wide, tiny["vqgan_checkpoint"])
    assert f"does not match {wide}" in msg
    assert "encoder.conv_in.weight: checkpoint [32,3,3,3] vs config [64,3,3,3]" in msg


def test_bad_config_files(tiny, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n  target: x")
    msg = _one_line_error(broken, tiny["vqgan_checkpoint"])
    assert str(broken) in msg and "yaml" in msg

    kl = tmp_path / "kl.yaml"
    kl.write_text(yaml.safe_dump({"model": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {}}}))
    msg = _one_line_error(kl, tiny["vqgan_checkpoint"])
    assert str(kl) in msg and "AutoencoderKL" in msg

    msg = _one_line_error(tiny["vqgan_checkpoint"], tiny["vqgan_checkpoint"])
    assert "swapped" in msg


def test_net2net_nested_config_loads(tiny, tmp_path):
    tiny_raw = yaml.safe_load(tiny["vqgan_config"].read_text())["model"]
    nested = {
        "model": {
            "target": NET2NET_TARGET,
            "params": {
                "cond_stage_key": "segmentation",
                "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT",
                                       "params": {"vocab_size": 64, "block_size": 16, "n_layer": 1}},
                "first_stage_config": tiny_raw,
                "cond_stage_config": "__is_unconditional__",
            },
        }
    }
    cfg_path = tmp_path / "net2net.yaml"
    cfg_path.write_text(yaml.safe_dump(nested))
    config = read_vqgan_config(cfg_path)
    assert config == tiny_vqgan_config() and config.state_dict_prefix == "first_stage_model."

    saved = load_weights(tiny["vqgan_checkpoint"], "ckpt", "",
                         aliases=[(LightningModelCheckpointStandIn, LIGHTNING_CHECKPOINT_CALLBACK)])
    state = {f"first_stage_model.{k}": v for k, v in saved["state_dict"].items()}
    state["transformer.tok_emb.weight"] = torch.zeros(64, 16)
    state["cond_stage_model.embedding.weight"] = torch.zeros(4, 4)
    ckpt = tmp_path / "net2net.ckpt"
    torch.save({"epoch": 1, "state_dict": state}, ckpt)

    model = load_vqgan(cfg_path, ckpt)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key]), key

    # A plain (non-Lightning) state dict with the same nesting loads too.
    plain = tmp_path / "plain.ckpt"
    torch.save(state, plain)
    model = load_vqgan(tiny["vqgan_config"], plain)
    assert torch.equal(model.codebook, saved["state_dict"]["quantize.embedding.weight"])


# --- the public API ------------------------------------------------------------------------------


def test_quantize_latent_straight_through_and_codebook_rows(tiny_model):
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(2, 8, 3, 5, generator=gen, requires_grad=True)
    w = torch.randn(2, 8, 3, 5, generator=gen)
    z_q = tiny_model.quantize_latent(z)
    (z_q * w).sum().backward()
    torch.testing.assert_close(z.grad, w)

    rows = z_q.detach().movedim(1, 3).reshape(-1, 8)  # (B*h*w, D)
    flat = z.detach().movedim(1, 3).reshape(-1, 8)
    nearest = torch.cdist(flat, tiny_model.codebook).argmin(1)
    torch.testing.assert_close(rows, tiny_model.codebook[nearest])
    assert nearest.unique().numel() > 3


def test_shapes_and_decode_image_range(tiny_model):
    gen = torch.Generator().manual_seed(8)
    assert (tiny_model.factor, tiny_model.embed_dim, tiny_model.n_embed, tiny_model.z_channels) == (4, 8, 64, 8)
    x = torch.rand(2, 3, 32, 48, generator=gen) * 2 - 1
    z = tiny_model.encode(x)
    assert z.shape == (2, 8, 8, 12)
    rows = z.movedim(1, 3).reshape(-1, 8)
    assert torch.isin(rows, tiny_model.codebook).all()  # encode returns code vectors

    codes = torch.randint(0, 64, (1, 4, 6), generator=gen)
    z_q = tiny_model.embed_codes(codes)
    assert z_q.shape == (1, 8, 4, 6)
    raw = tiny_model.decode(z_q)
    img = tiny_model.decode_image(z_q)
    assert raw.shape == img.shape == (1, 3, 16, 24)
    assert raw.min() < 0 < raw.max()  # raw output is centred on 0, not already in [0, 1]
    assert img.min() >= 0 and img.max() <= 1 and img.std() > 0.05
    torch.testing.assert_close(img, ((raw + 1) / 2).clamp(0, 1))


def test_decoder_checkpointing_gives_same_values_and_grads(tiny_model):
    gen = torch.Generator().manual_seed(9)
    z0 = torch.randn(1, 8, 4, 4, generator=gen)
    results = []
    for flag in (False, True):
        tiny_model.decoder.use_checkpointing = flag
        z = z0.clone().requires_grad_(True)
        out = tiny_model.decode(z)
        out.square().mean().backward()
        results.append((out.detach(), z.grad))
    tiny_model.decoder.use_checkpointing = False
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    assert results[0][1].abs().sum() > 0


def test_f16_16384_parameter_counts():
    config = VQGANConfig.from_omegaconf(F16_16384)
    assert config.factor == 16 and not config.gumbel
    with torch.device("meta"):
        model = VQGAN(config)

    def count(module: torch.nn.Module) -> float:
        return sum(p.numel() for p in module.parameters()) / 1e6

    assert count(model.encoder) == pytest.approx(29.3, rel=0.01)
    assert count(model.decoder) == pytest.approx(42.4, rel=0.01)
    assert model.codebook.numel() / 1e6 == pytest.approx(4.2, rel=0.01)


def test_without_the_reference_only_the_comparisons_skip(tmp_path):
    """The security and loading tests run even where taming is not installed."""
    import subprocess

    code = ("import sys; sys.modules['taming'] = None; import pytest; "
            f"sys.exit(pytest.main([{__file__!r}, '-q', '-p', 'no:cacheprovider', '-k', 'not only_the_comparisons and not f16_16384']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "3 skipped" in summary and " passed" in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 10, summary


def test_folded_upsample_equals_nearest_then_conv_with_gradients():
    torch.manual_seed(0)
    up = Upsample(6).double().requires_grad_(True)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 6, 10, 14, dtype=torch.float64)
    grads = []
    for forward in (up.forward, up.forward_unfolded):
        up.zero_grad()
        x.grad = None
        out = forward(x)
        (out * w).sum().backward()
        grads.append((out.detach(), x.grad.clone(), up.conv.weight.grad.clone(), up.conv.bias.grad.clone()))
    assert grads[0][0].shape == (2, 6, 10, 14)
    for folded, unfolded in zip(*grads):
        torch.testing.assert_close(folded, unfolded, rtol=1e-12, atol=1e-12)


def test_float32_upsample_from_32_pixels_runs_channels_last_with_the_same_values():
    torch.manual_seed(0)
    up = Upsample(8)
    for side, channels_last in ((32, True), (16, False)):
        x = torch.randn(1, 8, side, side)
        with torch.no_grad():
            out = up(x)
            exact = up.double().forward_unfolded(x.double())
            up.float()
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5)


def test_folded_upsample_weight_cache_follows_the_weights():
    torch.manual_seed(1)
    up = Upsample(4).requires_grad_(False)
    x = torch.randn(1, 4, 3, 3)
    first = up(x)
    torch.testing.assert_close(first, up.forward_unfolded(x))
    with torch.no_grad():
        up.conv.weight.mul_(2)  # in place: the cached fold must be rebuilt
    second = up(x)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, up.forward_unfolded(x))


def test_folded_weight_cached_under_autocast_still_serves_a_float32_decode():
    """A bf16 step (autocast, weights without gradient) fills the cache first; a float32 decode
    after it (keyframe frames, --precision fp32, evaluation) must not get a bf16 weight."""
    torch.manual_seed(2)
    up = Upsample(4).requires_grad_(False)
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert up(x).dtype == torch.bfloat16
    out = up(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, up.forward_unfolded(x))


def test_decode_low_then_high_is_decode_at_every_split(tiny_model):
    z = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(10))
    whole = tiny_model.decode(z)
    for levels in range(len(tiny_model.decoder.up) + 1):
        for upsample in (True, False):
            low = tiny_model.decode_low(z, levels, upsample)
            torch.testing.assert_close(tiny_model.decode_high(low, levels, upsample), whole)
            # Each low level but the full-resolution one doubles the size with its upsampling,
            # which for the last low level runs in decode_high when upsample is False.
            doubled = min(levels - (0 if upsample else 1), len(tiny_model.decoder.up) - 1)
            assert low.shape[-1] == 4 * 2 ** max(0, doubled)
    assert tiny_model.decode_low(z, 0).shape[-1] == 4  # conv_in + mid only: still latent-sized


def test_split_before_an_upsampling_passes_the_value_on_in_its_own_dtype(tiny_model):
    # Under bf16 autocast the moved upsampling computes in bf16; the level above must still see
    # the float32 value's dtype (its first GroupNorm then normalises in float32).
    z = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(11))
    low = tiny_model.decode_low(z, 1, upsample=False)
    seen = []
    block = list(reversed(tiny_model.decoder.up))[1].block[0]
    handle = block.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tiny_model.decode_high(low, 1, upsample=False)
            tiny_model.decode_high(low.bfloat16(), 1, upsample=False)
    finally:
        handle.remove()
    assert seen == [torch.float32, torch.bfloat16]


def test_upsample_fold_from_rounds_the_float32_fold_once():
    gen = torch.Generator().manual_seed(12)
    source = Upsample(4)
    with torch.no_grad():
        source.conv.weight.copy_(torch.randn(4, 4, 3, 3, generator=gen))
    copy = Upsample(4).to(torch.bfloat16)
    copy.load_state_dict(source.state_dict())
    copy.fold_from(source)
    expected = folded_upsample_weight(source.conv.weight.detach()).to(torch.bfloat16)
    x = torch.randn(1, 4, 3, 3, generator=gen).to(torch.bfloat16)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), F.conv_transpose2d(x, expected, copy.conv.bias, stride=2, padding=1))
        copy.conv.weight.mul_(2)  # a changed weight is folded again from itself
        refolded = folded_upsample_weight(copy.conv.weight)
        torch.testing.assert_close(copy(x), F.conv_transpose2d(x, refolded, copy.conv.bias, stride=2, padding=1))