#!/usr/bin/env python
"""Per-keyframe step time when B independent keyframes are optimised as one batch.

    python bench/keyframes.py [--device cuda] [--size 256] [--cutn 8] [--batches 1 2 4] [--steps 2]

Real architectures with random weights (f16_16384 decoder, CLIP ViT-B/32), the renderer's
default step settings. A batch of B latents is one decoder call and one CLIP call per step
(metamusic.optim.batched.BatchedStepper); on a GPU that uses the device fully, on a small CPU
it mostly amortises per-call overhead. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step import real_models  # noqa: E402  (bench/step.py builds the random real-size models)

from metamusic.optim.batched import BatchedStepper  # noqa: E402
from metamusic.optim.init import random_latent  # noqa: E402
from metamusic.optim.prompts import Target  # noqa: E402
from metamusic.optim.stepper import StepConfig, step_seed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cutn", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per batch size (after one warm-up)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    vqgan, perceptor = real_models(device)
    grid = (args.size // vqgan.factor, args.size // vqgan.factor)
    config = StepConfig(cutn=args.cutn, precision="auto")
    gen = torch.Generator().manual_seed(0)
    results = {}
    for b in args.batches:
        z = torch.cat([random_latent(vqgan.codebook.float().cpu(), grid, gen) for _ in range(b)]).to(device)
        targets = [[Target(torch.randn(1, perceptor.embed_dim, generator=gen).to(device))] for _ in range(b)]
        stepper = BatchedStepper(vqgan, perceptor, config, z)
        times = []
        for i in range(args.steps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            stepper.step(targets, [step_seed(1, k, i) for k in range(b)], index=i)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:  # the first step warms up
                times.append(time.perf_counter() - t0)
        step_s = statistics.median(times)
        results[b] = {"step_s": round(step_s, 4), "per_keyframe_s": round(step_s / b, 4)}
        print(f"B={b}: {step_s:.3f} s per batched step, {step_s / b:.3f} s per keyframe step", file=sys.stderr)
    print(json.dumps({"device": str(device), "size": args.size, "cutn": args.cutn, "batches": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
