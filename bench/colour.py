"""Time kornia's ColorJiggle against metamusic's ColourJiggle (forward + backward), interleaved.

    python bench/colour.py                 # 8x3x224x224 float32, 2 threads, median of 15 calls
    python bench/colour.py --p 1           # every sample jittered (no gated-out samples to skip)

The VQGAN-CLIP step's "Ji" setting (0.1 each, p = 0.7). Call i of both modules runs with seed i, so
both draw the same factors, order and samples; the calls alternate (kornia, ours, kornia, ...) so
background load hits both alike. Prints the medians and the ratio, and the largest output and
input-gradient differences of the last call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import kornia.augmentation as K

    from metamusic.optim.colour import ColourJiggle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--p", type=float, default=0.7, help="probability of jittering a sample (the step's 0.7)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
    modules = {
        "kornia": K.ColorJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=args.p),
        "ours": ColourJiggle(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=args.p),
    }
    times = {name: ([], []) for name in modules}
    last = {}
    for call in range(-2, args.calls):  # two untimed warm-up calls
        for name, module in modules.items():
            x = image.clone().requires_grad_(True)
            torch.manual_seed(max(call, 0))
            start = time.perf_counter()
            out = module(x)
            middle = time.perf_counter()
            (out * weight).sum().backward()
            end = time.perf_counter()
            if call >= 0:
                times[name][0].append(middle - start)
                times[name][1].append(end - start)
            last[name] = (out.detach(), x.grad)
    for name, (forward, both) in times.items():
        print(f"{name:7s} forward {statistics.median(forward) * 1e3:6.1f} ms   "
              f"forward+backward {statistics.median(both) * 1e3:6.1f} ms")
    ratio = statistics.median(times["kornia"][1]) / statistics.median(times["ours"][1])
    print(f"forward+backward ratio {ratio:.2f}x")
    (y0, g0), (y1, g1) = last["kornia"], last["ours"]
    print(f"max |output diff| {(y0 - y1).abs().max().item():.2e}   max |grad diff| {(g0 - g1).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
