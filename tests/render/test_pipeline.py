"""The optimisation step on the real (tiny) models, and the pieces of the render pipeline."""

from __future__ import annotations

import torch

from metamusic.models.clip import load_clip
from metamusic.models.vqgan_loader import load_vqgan
from metamusic.optim.init import random_latent
from metamusic.optim.prompts import Target
from metamusic.optim.stepper import StepConfig, optimise_segment


def _models(tiny):
    vqgan = load_vqgan(tiny["vqgan_config"], tiny["vqgan_checkpoint"])
    perceptor = load_clip(tiny["clip"])
    return vqgan, perceptor


def test_prompt_loss_decreases_over_a_segment_for_a_text_target(tiny_models):
    vqgan, perceptor = _models(tiny_models)
    with torch.no_grad():
        target = Target(perceptor.encode_text(["a red sunrise over the hills"]).float())
    z0 = random_latent(vqgan.codebook, (8, 8), torch.Generator().manual_seed(0))
    losses: list[float] = []
    config = StepConfig(cutn=4, augments=(), noise_fac=0.0, precision="fp32", lr=0.2)
    optimise_segment(vqgan, perceptor, config, z0, [target], 40, seed=1,
                     on_step=lambda i, r: losses.append(r.loss))
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first, (first, last)


def test_segment_optimisation_is_reproducible_and_seed_dependent(tiny_models):
    vqgan, perceptor = _models(tiny_models)
    with torch.no_grad():
        target = Target(perceptor.encode_text(["the deep blue ocean"]).float())
    z0 = random_latent(vqgan.codebook, (8, 8), torch.Generator().manual_seed(0))
    config = StepConfig(cutn=4, precision="fp32")

    def run(seed):
        z, state = optimise_segment(vqgan, perceptor, config, z0.clone(), [target], 5, seed=seed)
        return z

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_image_prompt_is_resized_to_the_output_and_embedded_per_cutout(tiny_models, tmp_path):
    """-ip as VQGAN-CLIP: output-size resize, then the step's cut-outs, augments and noise (one row each)."""
    import dataclasses

    import numpy as np
    from PIL import Image

    from metamusic.config import Config
    from metamusic.render.prepare import _image_target

    _, perceptor = _models(tiny_models)
    path = tmp_path / "prompt.png"
    Image.fromarray((np.random.default_rng(0).random((20, 40, 3)) * 255).astype("uint8")).save(path)
    config = Config()
    config.seed = 3
    config.step = dataclasses.replace(config.step, cutn=4, precision="fp32")
    target = _image_target(config, perceptor, f"{path}:0.5", (32, 32), 0)
    assert target.embed.shape == (4, perceptor.embed_dim) and target.weight == 0.5
    assert not torch.allclose(target.embed[0], target.embed[1])  # each cut-out its own augments and noise
    assert torch.equal(_image_target(config, perceptor, f"{path}:0.5", (32, 32), 0).embed, target.embed)
    other_size = _image_target(config, perceptor, f"{path}:0.5", (16, 16), 0)
    assert not torch.allclose(other_size.embed, target.embed)  # resized to the output size first
