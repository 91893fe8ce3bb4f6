"""Peak CPU memory of one optimisation step, measured in a fresh process (run by bench/step.py).

    python bench/memory.py --variant ours-low-memory --size 512 --cutn 32

Builds the real-size random models, then resets the kernel's peak-RSS mark (``5`` into
/proc/self/clear_refs), runs ONE step of the variant and prints, as the last line, a JSON
object: step_peak_mb = VmHWM after the step - VmRSS before it (the step's own peak: activations
kept for backward, temporaries, optimiser state), plus the absolute figures. Linux only; if the
mark cannot be reset, the peak includes model building and ``hwm_reset`` is false.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import step as bench  # noqa: E402  (bench/step.py)


def _status_mb(field: str) -> float:
    """A VmRSS/VmHWM line of /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_hwm() -> bool:
    """Reset this process's peak-RSS mark; False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="ours", choices=["baseline", *sorted(bench.VARIANTS)])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--cutn", type=int, default=8)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    vqgan, perceptor = bench.real_models(device)
    if args.variant == "baseline":
        run = bench.baseline_runner(vqgan, perceptor, args.size, args.cutn, device)
    else:
        run = bench.ours_runner(vqgan, perceptor, args.size, args.cutn, device, **bench.VARIANTS[args.variant])
    gc.collect()
    before = _status_mb("VmRSS")
    reset = _reset_hwm()
    run(0)
    hwm = _status_mb("VmHWM")
    print(json.dumps({
        "variant": args.variant, "size": args.size, "cutn": args.cutn,
        "rss_before_mb": round(before, 1), "peak_rss_mb": round(hwm, 1),
        "step_peak_mb": round(hwm - before, 1), "hwm_reset": reset,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
