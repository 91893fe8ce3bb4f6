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

from metamusic.errors import InputError
from metamusic.optim.prompts import Target
from metamusic.optim.stepper import (
    Decoder,
    Perceptor,
    StepConfig,
    Stepper,
    StepResult,
    _check_index,
)

__all__ = ["BatchedStepper"]


class BatchedStepper:
    """B latents (B, C, h, w), each with its own optimiser; ``step`` runs one step for all.

    Every piece of the step is :class:`Stepper`'s own (decode with --precision, --low_memory and
    --compile, cut-outs, loss terms, fp16 scaler and update): only the batching is added here.
    """

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
        return self.samples[0]._decode(z_q)

    def step(self, targets: Sequence[Sequence[Target]], seeds: Sequence[int], *, index: int) -> list[StepResult]:
        """Step ``index`` of every sample: sample b moves toward ``targets[b]`` with randomness from ``seeds[b]``."""
        _check_index(index)
        n = len(self.samples)
        if len(targets) != n or len(seeds) != n:
            raise InputError(f"batched step needs {n} target lists and seeds, got {len(targets)} and {len(seeds)}")
        for b, s in enumerate(self.samples):
            s._check_targets(targets[b], f"batch sample {b}: ")
            s.optimiser.zero_grad(set_to_none=True)
        images = self._synth()  # (B, 3, H, W)

        # 1. Cut-outs per sample, each from its own seed (same draw order as Stepper.step).
        cut_batches = [
            s._cutouts(images[b : b + 1], torch.Generator(device=self.device).manual_seed(int(seeds[b])))
            for b, s in enumerate(self.samples)
        ]  # B x (cutn, 3, S, S)
        # 2. One perceptor call for all cut-outs, split back per sample.
        embeds = self.samples[0]._embed(torch.cat(cut_batches))  # (B * cutn, D)
        per_sample = embeds.split([c.shape[0] for c in cut_batches])  # B x (cutn, D)

        # 3. Per-sample loss terms; the backward pass runs once on the sum of the (scaled) totals.
        terms = [torch.stack(s._terms(per_sample[b], targets[b], index)) for b, s in enumerate(self.samples)]
        torch.stack([s._scaled(t.sum()) for s, t in zip(self.samples, terms)]).sum().backward()

        # 4. Per-sample optimiser steps and clamps.
        results = []
        for b, s in enumerate(self.samples):
            s._update()
            values = terms[b].detach().float().cpu()
            results.append(StepResult(loss=float(values.sum()), losses=values.tolist(), image=images[b : b + 1].detach()))
        return results
