"""Interpolation between latents: lerp, slerp, easing curves and the beat pulse (keyframe mode).

Why slerp: the frames are quantised after interpolation (nearest codebook vector per position),
so a latent's norm matters. Two latents far apart are nearly orthogonal, so their linear
midpoint keeps only about 1/sqrt(2) of their norm and snaps to the low-norm codes near the
codebook's centre (grey, flat frames). Slerp (Shoemake 1985) rotates the direction on the
sphere and interpolates the norm linearly. Measurements: see ``metamusic.render.keyframe_mode``.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

import torch

from metamusic.errors import InputError

__all__ = [
    "EASINGS",
    "INTERPOLATIONS",
    "PULSE_STRENGTH",
    "beat_pulse",
    "beat_time",
    "ease",
    "interpolate_latents",
    "interpolate_on_beats",
    "interpolation_position",
    "lerp",
    "slerp",
]

INTERPOLATIONS = ("slerp", "lerp")
EASINGS = ("smoothstep", "cosine", "linear")
PULSE_STRENGTH = 0.75  # beat_pulse: speed 2.5 right after a beat, 0.25 just before the next
_PARALLEL_SIN = 1e-4  # below this sin(angle) slerp falls back to lerp


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Linear interpolation a + t (b - a); t a float or a tensor broadcastable to a."""
    return a + (b - a) * t


def _per_sample_t(t: float | torch.Tensor, n: int, ref: torch.Tensor) -> torch.Tensor:
    """t as an (n, 1) float tensor: one interpolation position per flattened sample."""
    t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
    if t.ndim == 0:
        return t.expand(n).reshape(n, 1)
    if t.numel() != n:
        raise InputError(f"slerp: got {t.numel()} positions for {n} samples")
    return t.reshape(n, 1)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation per sample (Shoemake 1985): direction on the great circle, norm linear.

    a, b: (B, ...) flattened per sample (a 1-d tensor is one sample); t: float or (B,). With equal
    norms this is the classic slerp and keeps the norm at every t; when the two directions are
    nearly parallel or antiparallel (sin of the angle < 1e-4) it falls back to :func:`lerp`.
    """
    if a.shape != b.shape:
        raise InputError(f"slerp: shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")
    shape = a.shape
    work = torch.promote_types(a.dtype, torch.float32)
    a2 = a.reshape(1, -1) if a.ndim <= 1 else a.reshape(a.shape[0], -1)  # (B, N)
    b2 = b.reshape(a2.shape)
    a64, b64 = a2.double(), b2.double()
    tt = _per_sample_t(t, a2.shape[0], a64)  # (B, 1)
    na = a64.norm(dim=1, keepdim=True)  # (B, 1)
    nb = b64.norm(dim=1, keepdim=True)  # (B, 1)
    ua = a64 / na.clamp_min(1e-12)
    ub = b64 / nb.clamp_min(1e-12)
    cos = (ua * ub).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)  # (B, 1)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    safe = sin.abs() > _PARALLEL_SIN
    sin_safe = torch.where(safe, sin, torch.ones_like(sin))
    direction = (torch.sin((1 - tt) * theta) * ua + torch.sin(tt * theta) * ub) / sin_safe  # (B, N) unit
    curved = direction * lerp(na, nb, tt)  # (B, N)
    out = torch.where(safe, curved, lerp(a64, b64, tt))
    return out.to(work).reshape(shape)


def ease(t: float | torch.Tensor, kind: str = "smoothstep") -> float | torch.Tensor:
    """Easing of t in [0, 1] (clamped): smoothstep 3t^2 - 2t^3, cosine (1 - cos(pi t)) / 2, or linear.

    Both non-linear easings have zero slope at 0 and 1, so the image rests at each keyframe and
    moves fastest halfway between two keyframes (a segment boundary, see the module doc).
    """
    if kind not in EASINGS:
        raise InputError(f"unknown easing {kind!r}; valid: {' '.join(EASINGS)}")
    if isinstance(t, torch.Tensor):
        t = t.clamp(0.0, 1.0)
        if kind == "smoothstep":
            return t * t * (3 - 2 * t)
        if kind == "cosine":
            return (1 - torch.cos(math.pi * t)) / 2
        return t
    t = min(1.0, max(0.0, float(t)))
    if kind == "smoothstep":
        return t * t * (3 - 2 * t)
    if kind == "cosine":
        return (1 - math.cos(math.pi * t)) / 2
    return t


def beat_pulse(x: float, strength: float = PULSE_STRENGTH) -> float:
    """Progress through one beat: x in [0, 1] -> (1 - a) x + a (1 - (1 - x)^3), a = ``strength``.

    A blend of constant speed and the cubic ease-out of Robert Penner's easing equations: the speed is 1 + 2a right after the beat, falls to 1 - a just before the next one and
    averages 1, so each beat keeps its share of the motion and only its timing changes, like the
    attack and decay of a drum hit. a = 0 is constant speed; a = 1 halts just before each beat.
    """
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"beat pulse strength must be in [0, 1], got {strength}")
    x = min(1.0, max(0.0, float(x)))
    return (1 - strength) * x + strength * (1 - (1 - x) ** 3)


def beat_time(t: float | Sequence[float], beats: Sequence[float], strength: float = PULSE_STRENGTH) -> list[float]:
    """Time warped to pulse with the beats: tau(t), fast right after every beat, slow before the next.

    tau(b_j) = b_j at every beat, tau(t) = b_j + (b_{j+1} - b_j) * beat_pulse((t - b_j) / (b_{j+1} - b_j))
    in between, and tau(t) = t outside [b_0, b_last]: continuous and non-decreasing. Interpolating
    between keyframes linearly in tau (position (tau(t) - tau(T_k)) / (tau(T_k+1) - tau(T_k))) moves
    the latent fastest right after each beat, however many beats lie between two keyframes (ours,
    for ``--keyframe_every``). ``beats``: non-decreasing times in seconds; returns one tau per t.
    """
    if any(b < a for a, b in zip(beats, beats[1:])):
        raise InputError("beat times must be non-decreasing")
    ts = [float(t)] if isinstance(t, (int, float)) else [float(x) for x in t]
    out = []
    for x in ts:
        j = bisect.bisect_right(beats, x) - 1  # beats[j] <= x < beats[j + 1]
        if j < 0 or j + 1 >= len(beats) or beats[j + 1] <= beats[j]:
            out.append(x)
            continue
        span = beats[j + 1] - beats[j]
        out.append(beats[j] + span * beat_pulse((x - beats[j]) / span, strength))
    return out


def interpolation_position(times: Sequence[float], t: float) -> tuple[int, float]:
    """(i, u): time t lies a fraction u in [0, 1) of the way from keyframe i to keyframe i + 1.

    Before the first keyframe time it is (0, 0.0) and from the last one on (K - 1, 0.0): those
    frames hold the first / last keyframe. ``times`` must be non-decreasing.
    """
    if not times:
        raise InputError("interpolation needs at least one keyframe time")
    if t <= times[0]:
        return 0, 0.0
    if t >= times[-1]:
        return len(times) - 1, 0.0
    i = bisect.bisect_right(times, t) - 1  # times[i] <= t < times[i + 1]
    span = times[i + 1] - times[i]
    return i, (t - times[i]) / span if span > 0 else 0.0


def interpolate_latents(
    keyframes: Sequence[torch.Tensor] | torch.Tensor,
    times: Sequence[float],
    t: float | Sequence[float],
    method: str = "slerp",
    easing: str = "smoothstep",
) -> torch.Tensor:
    """The latent at time(s) t between neighbouring keyframes, eased: (1 or T, C, h, w).

    keyframes: K tensors (1, C, h, w) or (C, h, w), or one (K, C, h, w) tensor; times: K
    non-decreasing keyframe times. A scalar t gives (1, C, h, w); a sequence of T times (T, C, h, w).
    """
    if method not in INTERPOLATIONS:
        raise InputError(f"unknown interpolation {method!r}; valid: {' '.join(INTERPOLATIONS)}")
    if isinstance(keyframes, torch.Tensor):
        stack = keyframes  # (K, C, h, w)
    else:
        stack = torch.cat([k if k.ndim == 4 else k[None] for k in keyframes])  # (K, C, h, w)
    if stack.ndim != 4:
        raise InputError(f"keyframes must be latents (K, C, h, w), got {tuple(stack.shape)}")
    if len(times) != stack.shape[0]:
        raise InputError(f"{stack.shape[0]} keyframes but {len(times)} keyframe times")
    if any(b < a for a, b in zip(times, times[1:])):
        raise InputError("keyframe times must be non-decreasing")
    ts = [float(t)] if isinstance(t, (int, float)) else [float(x) for x in t]
    if not ts:
        return stack[:0]
    pos = [interpolation_position(times, x) for x in ts]
    lo = torch.tensor([i for i, _ in pos], device=stack.device)
    hi = (lo + 1).clamp(max=stack.shape[0] - 1)
    u = torch.tensor([ease(w, easing) for _, w in pos], dtype=torch.float64)  # (T,)
    a, b = stack[lo], stack[hi]  # (T, C, h, w)
    if method == "slerp":
        return slerp(a, b, u.to(stack.device))
    return lerp(a, b, u.to(stack.device, stack.dtype)[:, None, None, None])


def interpolate_on_beats(
    keyframes: Sequence[torch.Tensor] | torch.Tensor,
    times: Sequence[float],
    t: float | Sequence[float],
    beats: Sequence[float],
    method: str = "slerp",
    strength: float = PULSE_STRENGTH,
) -> torch.Tensor:
    """The latent at time(s) t between keyframes at ``times``, pulsing with ``beats``: (1 or T, C, h, w).

    :func:`interpolate_latents` with keyframe and frame times warped by :func:`beat_time` and no
    easing: between keyframes k and k + 1 the position is (tau(t) - tau(T_k)) / (tau(T_k+1) - tau(T_k)),
    so the frame-to-frame change of the latent jumps up right after every beat and fades before
    the next, also on the beats between two keyframes (``--keyframe_every``).
    """
    return interpolate_latents(keyframes, beat_time(times, beats, strength), beat_time(t, beats, strength), method,
                               easing="linear")
