#!/usr/bin/env python
"""Speed-up of independent keyframes on 1 and 2 Ray workers of one thread each (CPU).

    python bench/scale.py [--keyframes 8] [--steps 2] [--size 128] [--cutn 8]

The keyframe tasks of one render (``--keyframes`` independent keyframes, one per task, each
``--steps`` steps) run through metamusic's RayExecutor on a private local Ray cluster, first with
one worker, then with two. The models have the real architectures (f16_16384 VQGAN decoder and
CLIP ViT-B/32, bench/step.py) with random weights, built once per worker. Times are wall
clock of the whole executor run, worker start-up (model build) included; the per-task overhead
is the driver's time per task minus the worker's own time. The last line is one JSON object
with ``one_worker_s``, ``two_workers_s`` and ``speedup``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a private cluster on 127.0.0.1 only

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metamusic.config import Config
from metamusic.optim.init import random_latent
from metamusic.optim.prompts import Target
from metamusic.optim.stepper import StepConfig
from metamusic.render.plan import Plan, plan_tasks
from metamusic.render.prepare import Models
from metamusic.render.ray_executor import RayExecutor
from metamusic.render.tasks import Job
from metamusic.song.timeline import Segment


def build_models(device: torch.device) -> Models:
    from step import (
        real_models,  # bench/step.py, on the worker's path via sys.path below
    )

    vqgan, perceptor = real_models(device)
    return Models(vqgan, perceptor, None)


def make_job(n: int, steps: int, size: int, cutn: int) -> Job:
    config = Config()
    config.keyframes.enabled, config.keyframes.independent, config.keyframes.steps = True, True, steps
    config.output.size = (size, size)
    segments = tuple(Segment(k, float(k), float(k + 1), 1, "text", "x", None, 1.0, 0.0, float(k), float(k + 1))
                     for k in range(n))
    tasks = tuple(plan_tasks(n, keyframes=True, independent=True, batch=1))
    plan = Plan(segments, tasks, 10.0, float(n), (size, size), True, 0)
    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(16384, 256, generator=gen)  # only the start latent's shape and scale matter here
    z0 = random_latent(codebook, (size // 16, size // 16), gen)
    targets = [[Target(torch.randn(1, 512, generator=gen))] for _ in range(n)]
    return Job(config, plan, targets, z0, StepConfig(cutn=cutn, precision="fp32"))


def timed_run(job: Job, workers: int) -> tuple[float, float]:
    """(wall seconds of the run, mean seconds a task spent inside its worker)."""
    executor = RayExecutor("local", cpus_per_task=1, max_workers=workers, build_models=build_models)
    inside: list[float] = []
    keyframe_tasks = [t for t in job.plan.tasks if t.kind == "keyframes"]
    t0 = time.perf_counter()
    executor.run(job, keyframe_tasks, lambda task: {"previous": None}, lambda task, out: inside.append(out.seconds))
    return time.perf_counter() - t0, sum(inside) / len(inside)


def main(argv: list[str] | None = None) -> int:
    import ray

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keyframes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--cutn", type=int, default=8)
    args = parser.parse_args(argv)
    bench = str(Path(__file__).resolve().parent)
    root = str(Path(__file__).resolve().parents[1])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([bench, root]), "OMP_NUM_THREADS": "1"}})
    job = make_job(args.keyframes, args.steps, args.size, args.cutn)
    one, one_task = timed_run(job, 1)
    two, two_task = timed_run(job, 2)
    ray.shutdown()
    n = args.keyframes
    result = {"keyframes": n, "steps": args.steps, "size": args.size, "cutn": args.cutn,
              "one_worker_s": round(one, 2), "two_workers_s": round(two, 2), "speedup": round(one / two, 2),
              "task_s_one_worker": round(one_task, 2), "task_s_two_workers": round(two_task, 2),
              "overhead_per_task_s": round(max(0.0, one / n - one_task), 2), "load_avg": os.getloadavg()[0]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
