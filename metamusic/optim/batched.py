"""B independent latents optimised as one batch, each exactly as its own :class:`Stepper` would.

One batched step decodes the B quantised latents in one decoder call and embeds all B * cutn
cut-outs in one perceptor call; everything else stays per sample so batching changes nothing
but float rounding:

- each sample keeps its own leaf latent (1, C, h, w), optimiser (and fp16 scaler) and init
  anchor, so optimisers that look at a whole parameter (AdamP's projection) or keep a step
  count see exactly what they would see alone;
- each sample's cut-outs, augments and noise come from its own step seed, drawn in the same
  order as :meth:`Stepper.step`;
- the loss is the plain sum of the per-sample totals (no mean across samples), so the gradient
  reaching sample b's latent is the gradient of sample b's loss alone.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from metamusic.errors import InputError
from metamusic.ops import clamp_with_grad
from metamusic.optim.augments import apply_augments
from metamusic.optim.cutouts import make_cutouts
from metamusic.optim.init import clamp_latent
from metamusic.optim.prompts import Target, target_loss
from metamusic.optim.stepper import (
    Decoder,
    Perceptor,
    StepConfig,
    Stepper,
    StepResult,
    _augment_seed,
    _autocast,
    _embed_cutouts,
)

__all__ = ["BatchedStepper"]


class BatchedStepper:
    """B latents (B, C, h, w), each with its own optimiser; ``step`` runs one step for all."""

    def __init__(self, decoder: Decoder, perceptor: Perceptor, config: StepConfig, z: torch.Tensor):
        if z.ndim != 4 or z.shape[0] < 1:
            raise InputError(f"latents must have shape (B, C, h, w) with B >= 1, got {tuple(z.shape)}")
        self.decoder = decoder
        self.perceptor = perceptor
        self.config = config
        self.samples = [Stepper(decoder, perceptor, config, z[b : b + 1]) for b in range(z.shape[0])]
        self.device = self.samples[0].device
        self.dtype = self.samples[0].dtype

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def latents(self) -> torch.Tensor:
        """Detached copies of the current latents. (B, C, h, w)"""
        return torch.cat([s.latent for s in self.samples])

    def _synth(self) -> torch.Tensor:
        """Images in [0, 1] of all latents, decoded in one call. -> (B, 3, H, W)"""
        z_q = torch.cat([s._quantize(s.z) for s in self.samples])  # (B, C, h, w), per-sample codes
        with _autocast(self.device, self.dtype):
            raw = self.decoder.decode(z_q)  # (B, 3, H, W) ~[-1, 1]
        return clamp_with_grad((raw.float() + 1) / 2, 0.0, 1.0)

    def step(self, targets: Sequence[Sequence[Target]], seeds: Sequence[int]) -> list[StepResult]:
        """One step of every sample: sample b moves toward ``targets[b]`` with randomness from ``seeds[b]``."""
        n = len(self.samples)
        if len(targets) != n or len(seeds) != n:
            raise InputError(f"batched step needs {n} target lists and seeds, got {len(targets)} and {len(seeds)}")
        cfg = self.config
        for b, s in enumerate(self.samples):
            if not targets[b] and not cfg.init_weight:
                raise InputError(f"batch sample {b}: nothing to optimise toward: give at least one prompt")
            s.optimiser.zero_grad(set_to_none=True)
        images = self._synth()  # (B, 3, H, W)

        # 1. Cut-outs per sample, each from its own seed (same draw order as Stepper.losses).
        cut_batches = []
        for b, s in enumerate(self.samples):
            generator = torch.Generator(device=self.device).manual_seed(int(seeds[b]))
            aug_seed = _augment_seed(generator)
            cut_batches.append(make_cutouts(
                images[b : b + 1],
                cfg.cut_method,
                self.perceptor.input_resolution,
                cfg.cutn,
                cfg.cut_pow,
                augment=lambda batch, m=s.augment, a=aug_seed: apply_augments(m, batch, a),
                generator=generator,
                noise_fac=cfg.noise_fac,
            ))  # (cutn, 3, S, S)
        # 2. One perceptor call for all cut-outs, split back per sample.
        embeds = _embed_cutouts(self.perceptor, torch.cat(cut_batches), self.dtype)  # (B * cutn, D)
        per_sample = embeds.split([c.shape[0] for c in cut_batches])  # B x (cutn, D)

        # 3. Per-sample loss terms; the backward pass runs once on their sum.
        totals, all_terms = [], []
        for b, s in enumerate(self.samples):
            terms = []
            if cfg.init_weight:
                terms.append(F.mse_loss(s.z, s.z_init) * cfg.init_weight / 2)
            terms += [target_loss(per_sample[b], t) for t in targets[b]]
            total = torch.stack(terms).sum()
            all_terms.append(terms)
            totals.append(total)
        scaled = [t if s.scaler is None else s.scaler.scale(t) for s, t in zip(self.samples, totals)]
        torch.stack(scaled).sum().backward()

        # 4. Per-sample optimiser steps and clamps.
        results = []
        for b, s in enumerate(self.samples):
            if s.scaler is None:
                s.optimiser.step()
            else:
                s.scaler.step(s.optimiser)
                s.scaler.update()
            clamp_latent(s.z, s.z_min, s.z_max)
            results.append(StepResult(
                loss=float(totals[b].detach()),
                losses=[float(t.detach()) for t in all_terms[b]],
                image=images[b : b + 1].detach(),
            ))
        return results
