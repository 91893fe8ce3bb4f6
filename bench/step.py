"""Benchmark one VQGAN-CLIP optimisation step: the reference loop's way vs MetaMusic's Stepper.

Both run in this one process on the same models (random weights, real architectures: the
f16_16384 VQGAN and CLIP ViT-B/32; plus the tiny test checkpoints), steps interleaved
baseline/ours so load from other processes hits both alike. Prints one line per setting and,
as the LAST line, a JSON object (ours_s, baseline_s, ratio = baseline_s / ours_s for the
default real-size setting, peak memory, matmul GFLOP/s). See bench/README.md.

    python bench/step.py                 # 256x256, 8 cut-outs + tiny, CPU, a few minutes
    python bench/step.py --full          # also 256/32 and 512x512/32 (the paper's defaults)
    python bench/step.py --device cuda   # on a GPU (memory from torch.cuda.max_memory_allocated)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from metamusic.models.clip import (  # noqa: E402
    CLIP_MEAN,
    CLIP_STD,
    ClipArchitecture,
    Perceptor,
    build_clip,
)
from metamusic.models.vqgan import (  # noqa: E402
    VQGAN,
    AttnBlock,
    Decoder,
    ResnetBlock,
    Upsample,
    VQGANConfig,
)
from metamusic.ops import clamp_with_grad, replace_grad  # noqa: E402
from metamusic.optim import StepConfig, Stepper, Target, random_latent, z_bounds  # noqa: E402
from metamusic.optim.speed import sequence_first_attention  # noqa: E402

# vqgan_imagenet_f16_16384's configs/model.yaml (taming-transformers' released config).
F16_16384 = VQGANConfig(
    embed_dim=256, n_embed=16384, z_channels=256, ch=128, ch_mult=(1, 1, 2, 2, 4),
    num_res_blocks=2, attn_resolutions=(16,), resolution=256,
)
# OpenAI CLIP ViT-B/32 as inferred from its weights' shapes.
VIT_B32 = ClipArchitecture(
    embed_dim=512, image_size=224, vision_layers=12, vision_width=768, vision_patch_size=32,
    vision_mlp_ratio=4.0, context_length=77, vocab_size=49408, text_width=512, text_heads=8,
    text_layers=12, text_mlp_ratio=4.0,
)
DEFAULT_AUGMENTS = ("Af", "Pe", "Ji", "Er")


# --------------------------------------------------------------------------- the baseline


def reference_augments(codes: Sequence[str] = DEFAULT_AUGMENTS) -> torch.nn.Module:
    """The kornia pipeline of VQGAN-CLIP's ``MakeCutouts`` (``-aug`` codes Af Pe Ji Er only).

    Written here from the reference's parameters, independent of metamusic.optim.augments.
    """
    import kornia.augmentation as K

    made = {
        "Af": lambda: K.RandomAffine(degrees=15, translate=0.1, shear=5, p=0.7, padding_mode="zeros", keepdim=True),
        "Pe": lambda: K.RandomPerspective(distortion_scale=0.7, p=0.7),
        "Ji": lambda: K.ColorJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=0.7),  # kornia 0.5.4 ColorJitter
        "Er": lambda: K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=0.7),
    }
    return torch.nn.Sequential(*(made[c]() for c in codes))


def _reference_quantize(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """VQGAN-CLIP's vector_quantize: squared-L2 argmin, one-hot @ codebook, straight-through."""
    x = z.movedim(1, 3)  # (1, h, w, C)
    d = x.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(1) - 2 * x @ codebook.T  # (1, h, w, K)
    x_q = F.one_hot(d.argmin(-1), codebook.shape[0]).to(d.dtype) @ codebook  # (1, h, w, C)
    return replace_grad(x_q, x).movedim(3, 1)  # (1, C, h, w)


def _taming_swish(x: torch.Tensor) -> torch.Tensor:
    """taming's ``nonlinearity``: ``x * torch.sigmoid(x)`` (two ops, not the fused F.silu)."""
    return x * torch.sigmoid(x)


def _taming_resnet_block(block: Any, x: torch.Tensor) -> torch.Tensor:
    """taming's ``ResnetBlock.forward`` (no timestep embedding), on MetaMusic's parameters."""
    h = block.conv1(_taming_swish(block.norm1(x)))
    h = block.conv2(block.dropout(_taming_swish(block.norm2(h))))
    if block.in_channels != block.out_channels:
        x = block.nin_shortcut(x)
    return x + h


def _taming_attention(block: Any, x: torch.Tensor) -> torch.Tensor:
    """taming's ``AttnBlock.forward``: the (HW, HW) weights by bmm and softmax, not SDPA."""
    h_ = block.norm(x)
    q, k, v = block.q(h_), block.k(h_), block.v(h_)
    b, c, h, w = q.shape
    weights = torch.bmm(q.reshape(b, c, h * w).permute(0, 2, 1), k.reshape(b, c, h * w)) * int(c) ** -0.5
    weights = F.softmax(weights, dim=2).permute(0, 2, 1)  # (B, HW, HW)
    return x + block.proj_out(torch.bmm(v.reshape(b, c, h * w), weights).reshape(b, c, h, w))


def _taming_decoder_tail(decoder: Any, h: torch.Tensor, levels: int) -> torch.Tensor:
    """The up-levels after ``levels`` and taming's ``norm_out``, nonlinearity, ``conv_out``."""
    for level in list(reversed(decoder.up))[levels:]:
        h = level(h)
    return decoder.conv_out(_taming_swish(decoder.norm_out(h)))


@contextlib.contextmanager
def taming_decoding(vqgan: Any) -> Iterator[None]:
    """Decode with taming-transformers' own operations (taming/modules/diffusionmodules/model.py),
    which the reference loop imports, on the same parameters:

    - each Upsample runs nearest x2 and then its 3x3 conv, not MetaMusic's folded transposed
      conv (same values, 2.25x the multiply-adds there);
    - the swish is ``x * torch.sigmoid(x)``, not F.silu;
    - AttnBlock computes its weights with bmm and softmax, not scaled_dot_product_attention.

    Same values as MetaMusic's decoder up to float rounding; only the reference's cost differs.
    """
    patched = []
    for m in vqgan.modules():
        if isinstance(m, Upsample):
            m.forward = m.forward_unfolded  # an instance attribute shadows the class's forward
        elif isinstance(m, ResnetBlock):
            m.forward = functools.partial(_taming_resnet_block, m)
        elif isinstance(m, AttnBlock):
            m.forward = functools.partial(_taming_attention, m)
        elif isinstance(m, Decoder):
            m.forward_high = functools.partial(_taming_decoder_tail, m)
        else:
            continue
        patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("forward_high", None)


def reference_step(
    vqgan: Any,
    perceptor: Any,
    z: torch.Tensor,
    optimiser: torch.optim.Optimizer,
    targets: Sequence[Target],
    *,
    cutn: int,
    augment: torch.nn.Module | None,
    noise_fac: float,
    z_min: torch.Tensor,
    z_max: torch.Tensor,
    generator: torch.Generator,
) -> float:
    """One step of the reference VQGAN-CLIP loop in fp32 (nerdyrodent/VQGAN-CLIP generate.py: synth, ascend_txt, train); returns the loss.

    synth (quantise, decode, clamp_with_grad), "latest" cut-outs pooling the whole image once
    per cut-out in a Python loop, kornia augments (global RNG, as the reference), per-cut-out
    noise, spherical-distance prompt losses, backward, optimiser step, per-channel clamp of z.
    The cut-out noise comes from ``generator`` instead of the global RNG. CLIP runs
    sequence-first, the layout of OpenAI's CLIP code that the reference imports.
    """
    optimiser.zero_grad(set_to_none=True)
    # 1. synth (taming's decoder operations: taming_decoding)
    z_q = _reference_quantize(z, vqgan.codebook)  # (1, C, h, w)
    with taming_decoding(vqgan):
        out = clamp_with_grad(vqgan.decode(z_q).add(1).div(2), 0, 1)  # (1, 3, H, W)
    # 2. MakeCutouts ("latest"): pool the whole image once per cut-out
    size = perceptor.input_resolution
    cutouts = []
    for _ in range(cutn):
        cutouts.append((F.adaptive_avg_pool2d(out, size) + F.adaptive_max_pool2d(out, size)) / 2)
    batch = torch.cat(cutouts, dim=0)  # (cutn, 3, S, S)
    if augment is not None:
        batch = augment(batch)
    if noise_fac:
        facs = torch.rand(cutn, 1, 1, 1, generator=generator, device=generator.device) * noise_fac
        noise = torch.randn(batch.shape, generator=generator, device=generator.device)
        batch = batch + (facs * noise).to(batch.device)
    # 3. CLIP embeddings of the normalised cut-outs
    mean = torch.tensor(CLIP_MEAN, device=batch.device)[:, None, None]
    std = torch.tensor(CLIP_STD, device=batch.device)[:, None, None]
    with sequence_first_attention(perceptor):
        iii = perceptor.encode_image((batch - mean) / std).float()  # (cutn, D)
    # 4. Prompt losses (the notebook's Prompt module)
    losses = []
    for t in targets:
        a = F.normalize(iii.unsqueeze(1), dim=2)  # (cutn, 1, D)
        b = F.normalize(t.embed.to(iii.device).unsqueeze(0), dim=2)  # (1, N, D)
        dists = a.sub(b).norm(dim=2).div(2).arcsin().pow(2).mul(2)  # (cutn, N)
        dists = dists * math.copysign(1.0, t.weight) if t.weight else dists * 0
        stop = torch.tensor(t.stop, device=dists.device)
        losses.append(abs(t.weight) * replace_grad(dists, torch.maximum(dists, stop)).mean())
    loss = sum(losses)
    # 5. Update and clamp
    loss.backward()
    optimiser.step()
    with torch.no_grad():
        z.copy_(z.maximum(z_min).minimum(z_max))
    return float(loss.detach())


# --------------------------------------------------------------------------- models


def real_models(device: torch.device, seed: int = 0) -> tuple[VQGAN, Perceptor]:
    """The f16_16384 VQGAN and CLIP ViT-B/32 with random weights, frozen, fp32, on ``device``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vqgan = VQGAN(F16_16384)
    clip = build_clip(VIT_B32)  # seeds its own init
    vqgan = vqgan.to(device).eval().requires_grad_(False)
    clip = clip.float().to(device).eval().requires_grad_(False)
    perceptor = Perceptor(
        model=clip, input_resolution=VIT_B32.image_size, embed_dim=VIT_B32.embed_dim,
        mean=torch.tensor(CLIP_MEAN, device=device), std=torch.tensor(CLIP_STD, device=device),
        name="ViT-B/32 (random)", context_length=VIT_B32.context_length,
    )
    return vqgan, perceptor


def tiny_models(device: torch.device, directory: Path) -> tuple[Any, Any]:
    """The tiny test checkpoints, written to ``directory`` and loaded the normal way."""
    from metamusic.models.clip import load_clip
    from metamusic.models.vqgan_loader import load_vqgan
    from metamusic.tiny import write_all

    paths = write_all(directory, seed=0)
    vqgan = load_vqgan(paths["vqgan_config"], paths["vqgan_checkpoint"], device)
    return vqgan, load_clip(paths["clip"], device)


def start_latent(vqgan: Any, size: int, device: torch.device) -> torch.Tensor:
    """A random-token latent for a size x size image. (1, C, size/f, size/f)"""
    grid = size // vqgan.factor
    z = random_latent(vqgan.codebook, (grid, grid), torch.Generator(device=device).manual_seed(1))
    return z.to(device)


def text_like_target(perceptor: Any, device: torch.device) -> list[Target]:
    """One random unit target in CLIP space (stands in for a lyric's text embedding)."""
    gen = torch.Generator().manual_seed(2)
    return [Target(torch.randn(1, perceptor.embed_dim, generator=gen).to(device))]


# --------------------------------------------------------------------------- runners


def baseline_runner(vqgan: Any, perceptor: Any, size: int, cutn: int, device: torch.device,
                    augments: Sequence[str] = DEFAULT_AUGMENTS, noise_fac: float = 0.1,
                    lr: float = 0.1) -> Callable[[int], float]:
    """A closure running reference steps on its own latent and Adam state: step(seed) -> loss."""
    z = start_latent(vqgan, size, device).requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=lr)
    z_min, z_max = (b.to(device) for b in z_bounds(vqgan.codebook))
    augment = reference_augments(augments).to(device) if augments else None
    targets = text_like_target(perceptor, device)

    def step(seed: int) -> float:
        gen = torch.Generator(device=device).manual_seed(seed)
        return reference_step(vqgan, perceptor, z, optimiser, targets, cutn=cutn, augment=augment,
                              noise_fac=noise_fac, z_min=z_min, z_max=z_max, generator=gen)

    return step


def ours_runner(vqgan: Any, perceptor: Any, size: int, cutn: int, device: torch.device,
                **config: Any) -> Callable[[int], float]:
    """A closure running Stepper steps (StepConfig defaults + ``config``): step(seed) -> loss."""
    stepper = Stepper(vqgan, perceptor, StepConfig(cutn=cutn, **config), start_latent(vqgan, size, device))
    targets = text_like_target(perceptor, device)
    return lambda seed: stepper.step(targets, seed, index=0).loss


def _median_time(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_breakdown(vqgan: Any, perceptor: Any, size: int, cutn: int, device: torch.device,
                   repeats: int = 3, **config: Any) -> dict[str, float]:
    """Seconds of each part of a Stepper step (forward + backward), each timed on its own.

    decoder: quantise + decode + clamp, backward to z; augments: cut-outs, kornia augments and
    noise, backward to the image; clip: normalise + image tower + loss, backward to the
    cut-outs; optimiser: Adam step + clamp of z. The parts' sum is close to a whole step.
    """
    stepper = Stepper(vqgan, perceptor, StepConfig(cutn=cutn, **config), start_latent(vqgan, size, device))
    targets = text_like_target(perceptor, device)

    def gen() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(3)

    def decoder() -> None:
        stepper.z.grad = None
        image = stepper._synth(stepper.z)
        image.backward(torch.full_like(image, 1e-3))

    image = stepper._synth(stepper.z).detach()

    def augments() -> None:
        x = image.clone().requires_grad_(True)
        cut = stepper._cutouts(x, gen())
        cut.backward(torch.full_like(cut, 1e-3))

    cutouts = stepper._cutouts(image, gen()).detach()

    def clip() -> None:
        x = cutouts.clone().requires_grad_(True)
        torch.stack(stepper._terms(stepper._embed(x), targets, 0)).sum().backward()

    def optimiser() -> None:
        stepper.z.grad = torch.full_like(stepper.z, 1e-3)
        stepper._update()

    parts = {"decoder": decoder, "augments": augments, "clip": clip, "optimiser": optimiser}
    return {name: _median_time(fn, repeats, device) for name, fn in parts.items()}


def grad_cosine(vqgan: Any, perceptor: Any, size: int, cutn: int, device: torch.device,
                seeds: Sequence[int] = (7, 8), **config: Any) -> list[float]:
    """Cosine similarity of dloss/dz after one step with ``config`` vs the same step in fp32, per seed."""
    targets = text_like_target(perceptor, device)
    cosines = []
    for seed in seeds:
        grads = []
        for cfg in (config, {**config, "precision": "fp32"}):
            stepper = Stepper(vqgan, perceptor, StepConfig(cutn=cutn, **cfg), start_latent(vqgan, size, device))
            stepper.step(targets, seed, index=0)
            grads.append(stepper.z.grad.detach().flatten().float())
        cosines.append(F.cosine_similarity(grads[0], grads[1], dim=0).item())
    return cosines


VARIANTS: dict[str, dict[str, Any]] = {
    "ours": {"precision": "auto"},  # the renderer's defaults
    "ours-fp32": {"precision": "fp32"},
    "ours-channels-last": {"precision": "auto", "channels_last": True},
    "ours-low-memory": {"precision": "auto", "low_memory": True},
    "ours-compile": {"precision": "auto", "compile": True},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(run: Callable[[int], float], seed: int) -> tuple[float, float]:
    """(seconds, FLOP) of one step, counted by torch's FlopCounterMode (matmul, conv, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    t0 = time.perf_counter()
    with counter:
        run(seed)
    return time.perf_counter() - t0, float(counter.get_total_flops())


def time_interleaved(runs: dict[str, Callable[[int], float]], steps: int, warmup: int,
                     device: torch.device) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU seconds per step of each runner, rounds interleaved A, B, A, B."""
    flops: dict[str, float] = {}
    for name, run in runs.items():
        for i in range(warmup):
            if i == 0:
                _, flops[name] = count_flops(run, 1000 + i)
            else:
                run(1000 + i)
        _sync(device)
    wall: dict[str, list[float]] = {n: [] for n in runs}
    cpu: dict[str, list[float]] = {n: [] for n in runs}
    loss: dict[str, float] = {}
    for i in range(steps):
        for name, run in runs.items():
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            loss[name] = run(i)
            _sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {
        n: {"s": statistics.median(wall[n]), "cpu_s": statistics.median(cpu[n]),
            "min_s": min(wall[n]), "gflop": flops.get(n, float("nan")) / 1e9, "loss": loss[n]}
        for n in runs
    }


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` GFLOP/s of an n x n @ n x n torch.mm in ``dtype`` (the machine's limit)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=device).to(dtype)
    b = torch.randn(n, n, generator=gen, device=device).to(dtype)
    torch.mm(a, b)
    best = math.inf
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# --------------------------------------------------------------------------- memory


def cuda_peak_mb(make_run: Callable[[], Callable[[int], float]], device: torch.device) -> float:
    """Peak CUDA memory (MB, torch.cuda.max_memory_allocated) over building a runner and one step."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run = make_run()
    run(0)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del run
    return peak / 2**20


def cpu_peak_mb(variant: str, size: int, cutn: int, threads: int) -> dict[str, Any]:
    """Run bench/memory.py in a fresh process for one variant and return its JSON report."""
    cmd = [sys.executable, str(Path(__file__).with_name("memory.py")), "--variant", variant,
           "--size", str(size), "--cutn", str(cutn), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"variant": variant, "error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first counts FLOP)")
    p.add_argument("--full", action="store_true", help="add 256x256/32 and 512x512/32 cut-outs")
    p.add_argument("--tiny-only", action="store_true", help="only the tiny checkpoints (seconds)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--variants", nargs="+", default=["ours"], choices=sorted(VARIANTS),
                   help="project variants to time against the baseline (first one is reported)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument("--memory-size", type=int, default=0,
                   help="image size of the memory runs (default 256; 512 with --full)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        raise SystemExit("--steps and --warmup must be >= 1 (the first warm-up step counts FLOP)")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # kornia's augments draw from the global RNG, as in the reference
    threads = torch.get_num_threads()
    from metamusic.optim.stepper import resolve_precision

    autocast = resolve_precision("auto", device)
    print(f"device {device}, torch {torch.__version__}, {threads} threads, precision auto -> "
          f"{autocast or torch.float32}", flush=True)

    peaks = {"fp32": matmul_gflops(torch.float32, device), "bf16": matmul_gflops(torch.bfloat16, device)}
    if device.type == "cuda":
        peaks["fp16"] = matmul_gflops(torch.float16, device)
    print("matmul GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()), flush=True)
    ours_peak = peaks.get(str(autocast).replace("torch.", "").replace("bfloat16", "bf16")
                          .replace("float16", "fp16"), peaks["fp32"])

    def report(label: str, res: dict[str, dict[str, float]]) -> None:
        base = res["baseline"]
        for name, r in res.items():
            peak = peaks["fp32"] if name in ("baseline", "ours-fp32") else ours_peak
            util = r["gflop"] / r["s"] / peak if r["s"] > 0 else float("nan")
            extra = "" if name == "baseline" else f"  x{base['s'] / r['s']:.2f} vs baseline"
            print(f"{label:<24} {name:<20} {r['s']:7.3f} s/step (cpu {r['cpu_s']:.2f} s, min "
                  f"{r['min_s']:.3f})  {r['gflop']:7.1f} GFLOP  {util:5.0%} of matmul peak  "
                  f"loss {r['loss']:.4f}{extra}", flush=True)

    configs: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    settings = [] if args.tiny_only else [(256, 8)] + ([(256, 32), (512, 32)] if args.full else [])
    if settings:
        vqgan, perceptor = real_models(device)
        for size, cutn in settings:
            runs = {"baseline": baseline_runner(vqgan, perceptor, size, cutn, device)}
            for v in args.variants:
                runs[v] = ours_runner(vqgan, perceptor, size, cutn, device, **VARIANTS[v])
            res = time_interleaved(runs, args.steps, args.warmup, device)
            report(f"real {size}x{size} cutn {cutn}", res)
            configs.append({"models": "real", "size": size, "cutn": cutn, **{
                n: {k: round(v, 4) for k, v in r.items()} for n, r in res.items()}})
            if not summary:
                first = args.variants[0]
                summary = {"ours_s": res[first]["s"], "baseline_s": res["baseline"]["s"],
                           "ratio": res["baseline"]["s"] / res[first]["s"],
                           "ours_cpu_s": res[first]["cpu_s"], "baseline_cpu_s": res["baseline"]["cpu_s"],
                           "cpu_ratio": res["baseline"]["cpu_s"] / res[first]["cpu_s"],
                           "ratio_min": res["baseline"]["min_s"] / res[first]["min_s"]}
                parts = step_breakdown(vqgan, perceptor, size, cutn, device, **VARIANTS[first])
                print("breakdown " + first + ": " + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items())
                      + f" (sum {sum(parts.values()):.3f} s)", flush=True)
                cosines = grad_cosine(vqgan, perceptor, size, cutn, device, **VARIANTS[first])
                print(f"grad cosine vs fp32 ({first}, seeds 7 8): "
                      + ", ".join(f"{c:.4f}" for c in cosines), flush=True)
                summary.update(breakdown_s={k: round(v, 4) for k, v in parts.items()},
                               grad_cosine_vs_fp32=round(min(cosines), 4),
                               grad_cosines_vs_fp32=[round(c, 4) for c in cosines])
            del runs
        del vqgan, perceptor

    with tempfile.TemporaryDirectory() as tmp:
        vqgan, perceptor = tiny_models(device, Path(tmp))
        size = perceptor.input_resolution
        runs = {"baseline": baseline_runner(vqgan, perceptor, size, 8, device)}
        for v in args.variants:
            runs[v] = ours_runner(vqgan, perceptor, size, 8, device, **VARIANTS[v])
        res = time_interleaved(runs, max(args.steps, 5), args.warmup, device)
        report(f"tiny {size}x{size} cutn 8", res)
        configs.append({"models": "tiny", "size": size, "cutn": 8, **{
            n: {k: round(v, 5) for k, v in r.items()} for n, r in res.items()}})
        if not summary:
            first = args.variants[0]
            summary = {"ours_s": res[first]["s"], "baseline_s": res["baseline"]["s"],
                       "ratio": res["baseline"]["s"] / res[first]["s"]}

    memory: dict[str, Any] = {}
    if not args.no_memory and not args.tiny_only:
        msize = args.memory_size or (512 if args.full else 256)
        mcutn = 32 if args.full else 8
        if device.type == "cuda":
            method = "torch.cuda.max_memory_allocated over building the runner and one step, MB"
            vqgan, perceptor = real_models(device)
            for name in ("baseline", "ours", "ours-low-memory"):
                make = (lambda: baseline_runner(vqgan, perceptor, msize, mcutn, device)) if name == "baseline" \
                    else (lambda n=name: ours_runner(vqgan, perceptor, msize, mcutn, device, **VARIANTS[n]))
                memory[name] = round(cuda_peak_mb(make, device), 1)
        else:
            method = ("peak RSS growth during one step (VmHWM after the step minus VmRSS before it, "
                      "HWM reset first), fresh process per variant (bench/memory.py), MB")
            for name in ("baseline", "ours", "ours-low-memory"):
                r = cpu_peak_mb(name, msize, mcutn, threads)
                memory[name] = r.get("step_peak_mb", r.get("error"))
        print(f"peak memory {msize}x{msize} cutn {mcutn} ({method}): "
              + ", ".join(f"{k} {v}" for k, v in memory.items()), flush=True)
        memory = {"size": msize, "cutn": mcutn, "method": method, **memory}

    result = {
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()},
        "setting": "real 256x256 cutn 8" if settings else "tiny",
        "variant": args.variants[0],
        "peak_memory_mb": memory,
        "matmul_gflops": {k: round(v, 1) for k, v in peaks.items()},
        "device": str(device),
        "threads": threads,
        "precision_auto": str(autocast or torch.float32).replace("torch.", ""),
        "steps": args.steps,
        "warmup": args.warmup,
        "configs": configs,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
