"""Write a tiny random VQGAN in the official taming-transformers file formats (for tests/demos).

The yaml has the layout of the published ``configs/model.yaml`` and the ``.ckpt`` that of a
PyTorch Lightning 1.0 checkpoint, including the pickled ``ModelCheckpoint`` class reference that
makes plain weights-only loading fail; Lightning itself is not needed to write it.
"""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
import yaml

from metamusic.models.vqgan import GUMBEL_TARGET, VQGAN, VQMODEL_TARGET, VQGANConfig

LIGHTNING_CALLBACK_MODULE = "pytorch_lightning.callbacks.model_checkpoint"


def tiny_vqgan_config(gumbel: bool = False) -> VQGANConfig:
    """Tiny VQGAN sizes: factor 4, attention at the lowest level, 64 codes of width 8."""
    return VQGANConfig(
        embed_dim=8,
        n_embed=64,
        z_channels=8,
        ch=32,
        ch_mult=(1, 1, 2),
        num_res_blocks=1,
        attn_resolutions=(8,),
        resolution=32,
        gumbel=gumbel,
        target=GUMBEL_TARGET if gumbel else VQMODEL_TARGET,
    )


def tiny_vqgan_state_dict(config: VQGANConfig, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Deterministic random weights for ``config`` with moderate scales (non-constant output)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in VQGAN(config).state_dict().items()}
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in shapes.items():
        noise = torch.randn(shape, generator=gen)
        if key.endswith(("embedding.weight", "embed.weight")):
            value = noise  # codebook: unit-scale, well separated codes
        elif len(shape) >= 2:
            fan_in = shape[1:].numel()
            value = noise / fan_in**0.5  # variance-preserving convolutions
        elif ".norm" in key:  # GroupNorm affine
            value = 1.0 + 0.1 * noise if key.endswith("weight") else 0.1 * noise
        else:
            value = 0.05 * noise  # biases
        state[key] = value.contiguous()
    return state


def _fake_loss_tensors(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A few training-only ``loss.*`` entries such as the LPIPS/discriminator ones in real files."""
    return {
        "loss.logvar": torch.zeros(()),
        "loss.perceptual_loss.lin0.model.1.weight": torch.rand(1, 64, 1, 1, generator=gen),
        "loss.discriminator.main.0.weight": torch.randn(8, 3, 4, 4, generator=gen),
        "loss.discriminator.main.0.bias": torch.randn(8, generator=gen),
    }


def _yaml_dict(config: VQGANConfig) -> dict:
    params = config.to_taming_params()
    if config.gumbel:
        params["kl_weight"] = 1.0e-08
        params["temperature_scheduler_config"] = {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": 1000001, "lr_start": 0.9,
                       "lr_max": 0.9, "lr_min": 1.0e-06},
        }
    params["lossconfig"] = {
        "target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
        "params": {"disc_conditional": False, "disc_in_channels": 3, "disc_start": 250001,
                   "disc_weight": 0.8, "codebook_weight": 1.0},
    }
    return {
        "model": {
            "base_learning_rate": 4.5e-06,
            "target": GUMBEL_TARGET if config.gumbel else VQMODEL_TARGET,
            "params": params,
        }
    }


def _save_with_lightning_callback_key(checkpoint_for: Callable[[type], dict], path: Path) -> None:
    """torch.save a checkpoint whose ``callbacks`` key pickles as Lightning's ModelCheckpoint.

    A throwaway class carrying that dotted name is registered in ``sys.modules`` only while
    saving; previous entries (if any) are restored afterwards.
    """
    names = ("pytorch_lightning", "pytorch_lightning.callbacks", LIGHTNING_CALLBACK_MODULE)
    saved = {name: sys.modules.get(name) for name in names}
    stand_in = type("ModelCheckpoint", (), {"__module__": LIGHTNING_CALLBACK_MODULE})
    stand_in.__qualname__ = "ModelCheckpoint"
    fake = types.ModuleType(LIGHTNING_CALLBACK_MODULE)
    fake.ModelCheckpoint = stand_in
    try:
        for name in names[:-1]:
            sys.modules[name] = types.ModuleType(name)
        sys.modules[LIGHTNING_CALLBACK_MODULE] = fake
        torch.save(checkpoint_for(stand_in), path)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write_tiny_vqgan(directory: Path, seed: int = 0, gumbel: bool = False) -> dict[str, Path]:
    """Write ``tiny_vqgan[_gumbel].{yaml,ckpt}`` into ``directory``; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = tiny_vqgan_config(gumbel)
    stem = "tiny_vqgan_gumbel" if gumbel else "tiny_vqgan"
    config_path = directory / f"{stem}.yaml"
    ckpt_path = directory / f"{stem}.ckpt"

    # 1. The yaml, in the published configs/model.yaml layout.
    config_path.write_text(yaml.safe_dump(_yaml_dict(config), sort_keys=False))

    # 2. Weights plus the training-only entries a Lightning 1.0 checkpoint carries.
    state = tiny_vqgan_state_dict(config, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    state.update(_fake_loss_tensors(gen))
    first = next(iter(state.values()))
    adam = {"step": 3, "exp_avg": torch.zeros_like(first), "exp_avg_sq": torch.zeros_like(first)}
    optimizer_states = [
        {"state": {0: adam},
         "param_groups": [{"lr": 4.5e-06, "betas": (0.5, 0.9), "eps": 1e-08, "weight_decay": 0,
                           "amsgrad": False, "params": [0]}]},
        {"state": {},
         "param_groups": [{"lr": 4.5e-06, "betas": (0.5, 0.9), "eps": 1e-08, "weight_decay": 0,
                           "amsgrad": False, "params": [0]}]},
    ]

    def checkpoint_for(callback_class: type) -> dict:
        return {
            "epoch": 3,
            "global_step": 1234,
            "pytorch-lightning_version": "1.0.8",
            "callbacks": {callback_class: {"monitor": None, "best_model_score": None,
                                           "best_model_path": ""}},
            "optimizer_states": optimizer_states,
            "lr_schedulers": [],
            "state_dict": state,
        }

    _save_with_lightning_callback_key(checkpoint_for, ckpt_path)
    return {"vqgan_config": config_path, "vqgan_checkpoint": ckpt_path}
