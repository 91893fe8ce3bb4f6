"""Colour jitter with the meaning of kornia's ``ColorJiggle``, several times faster on RGB floats.

kornia's ``ColorJiggle`` (brightness x + (f - 1), contrast x * f, HSV saturation * f, hue turned
by f * 2 pi, in a random order: kornia 0.5.4's ``ColorJitter``) converts pixels to HSV and back
with branch-free ``torch.where`` chains, and its autograd backward replays them. Per pixel both
HSV steps are V - V S T_n with a table entry T_n (hue) or a linear blend (saturation), so
:class:`ColourJiggle` computes every discrete choice (hue sextant, table entry, wrap-around)
with kornia's own arithmetic and writes the backward by hand as a few per-pixel reductions
(:class:`_Jiggle`). The gradient is kornia's autograd gradient, subgradients included: ``amax``
and ``amin`` split it evenly among tied channels, the hue sextant is the first maximal
channel's, black and gray pixels keep kornia's guarded divisors, step clamps follow
``torch.clamp`` and the outer clamps keep gradient 1 on the closed range [0, 1].
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import kornia.augmentation as K
import torch
from torch.autograd.function import once_differentiable

__all__ = ["ColourJiggle"]

_FACTOR_KEYS = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")
_NEUTRAL = (1.0, 1.0, 1.0, 0.0)
_TWO_PI = 2 * math.pi
_EPS = 1e-8  # rgb_to_hsv's saturation guard: s = delta / (max + eps), 1 for a black pixel

_Range = Union[torch.Tensor, float, Tuple[float, float], List[float]]
_Backward = Callable[[torch.Tensor], torch.Tensor]


@functools.lru_cache(maxsize=None)
def _clamp_passes_bound() -> bool:
    """Whether ``torch.clamp``'s gradient is 1 at a bound (torch <= 2.9) or 0 (torch 2.14)."""
    t = torch.zeros((), requires_grad=True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(t.clamp(0.0, 1.0), t)
    return bool(grad == 1)


def _inside(y: torch.Tensor, closed: bool) -> torch.Tensor:
    """1 where ``y`` is in [0, 1] (``closed``) or (0, 1), else 0, in ``y``'s dtype."""
    if closed:
        return ((y >= 0) & (y <= 1)).to(y.dtype)
    return ((y > 0) & (y < 1)).to(y.dtype)


def _tie_weights(x: torch.Tensor, extreme: torch.Tensor) -> torch.Tensor:
    """amax/amin's backward weights: 1 / count on the channels equal to ``extreme``. (B, 3, H, W)."""
    hit = (x == extreme).to(x.dtype)
    return hit.div_(hit.sum(1, keepdim=True))


def _unit_clamp(x: torch.Tensor, record: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """kornia's outer clamp: values ``x.clamp(0, 1)``, gradient 1 on [0, 1] and 0 outside."""
    return x.clamp(0.0, 1.0), _inside(x, True) if record else None


def _brightness(x: torch.Tensor, shift: torch.Tensor, record: bool) -> Tuple[torch.Tensor, Any]:
    """x + (f - 1), clamped (torch.clamp). ``shift`` (B, 1, 1, 1) is f - 1."""
    y = x + shift
    slope = _inside(y, _clamp_passes_bound()) if record else None
    return y.clamp_(0.0, 1.0), slope


def _contrast(x: torch.Tensor, factor: torch.Tensor, record: bool) -> Tuple[torch.Tensor, Any]:
    """x * f, clamped (torch.clamp)."""
    y = x * factor
    slope = _inside(y, _clamp_passes_bound()).mul_(factor) if record else None
    return y.clamp_(0.0, 1.0), slope


def _value_saturation(x: torch.Tensor):
    """V = max, min, delta = V - min, the divisor of S = delta / divisor and S; each (B, 1, H, W)."""
    v = x.amax(1, keepdim=True)
    low = x.amin(1, keepdim=True)
    delta = v - low
    divisor = torch.where(v == 0, torch.ones_like(v), v + _EPS)
    return v, low, delta, divisor, delta / divisor


def _saturation(x: torch.Tensor, factor: torch.Tensor, record: bool) -> Tuple[torch.Tensor, Any]:
    """HSV saturation * f in kornia's float closed form: each channel's distance from the minimum scaled.

    out = (x - min) * (V S' / delta) + (V - V S'), S' = clamp(S f, 0, 1), delta 0 -> 1.
    """
    v, low, delta, divisor, s = _value_saturation(x)
    sf = s * factor
    s2 = sf.clamp(0.0, 1.0)
    scaled = v * s2  # the new delta
    gray = delta == 0
    delta_div = torch.where(gray, torch.ones_like(delta), delta)
    k = scaled / delta_div
    xm = x - low  # (B, 3, H, W)
    out = xm * k
    out += v - scaled
    if not record:
        return out, None
    w_max, w_min = _tie_weights(x, v), _tie_weights(x, low)
    s2_slope = _inside(sf, _clamp_passes_bound()).mul_(factor)
    live = (v != 0).to(x.dtype)
    not_gray = (~gray).to(x.dtype)

    def backward(g: torch.Tensor) -> torch.Tensor:
        # out_c = (x_c - m) k + V - A, A = V S', k = A / delta, S = delta / divisor, delta = V - m.
        g_sum = g.sum(1, keepdim=True)
        g_xm = (g * xm).sum(1, keepdim=True)
        coef_a = g_xm / delta_div - g_sum
        coef_delta = -g_xm * scaled / delta_div.square() * not_gray
        coef_v = g_sum + coef_a * s2
        coef_s = coef_a * v * s2_slope
        coef_delta += coef_s / divisor
        coef_v -= coef_s * s / divisor * live
        coef_v += coef_delta
        coef_min = -k * g_sum - coef_delta
        grad = g * k
        grad.addcmul_(w_max, coef_v)
        return grad.addcmul_(w_min, coef_min)

    return out, backward


def _hue(x: torch.Tensor, turn: torch.Tensor, record: bool) -> Tuple[torch.Tensor, Any]:
    """Hue turned by ``turn`` radians (B, 1, 1, 1): kornia's hsv_to_rgb(adjust_hue_raw(rgb_to_hsv(x))).

    Per pixel out_n = V - V S T_n, T_n = P_n + c_n f from hsv_to_rgb's table (0, f, 1, 1 - f), f the
    fractional sextant of the turned hue; the sextant comes from rgb_to_hsv's and adjust_hue_raw's
    arithmetic repeated operation for operation, so boundary pixels fall where kornia's do. With
    hue6 = base + num / delta (num: the difference of the two channels after the first maximal
    one), d f = d hue6 = (d num - q d delta) / delta, q = num / delta, unless a hue wrapped to 0.
    """
    v, low, delta, divisor, s = _value_saturation(x)  # (B, 1, H, W)
    r, g, b = x.unbind(1)  # (B, H, W)
    v1, delta1 = v[:, 0], delta[:, 0]
    dc = torch.where(delta1 == 0, torch.ones_like(delta1), delta1)
    rc, gc, bc = v1 - r, v1 - g, v1 - b
    h1 = bc - gc
    h2 = (rc - bc) + 2.0 * dc
    h3 = (gc - rc) + 4.0 * dc
    is_r = (r >= g) & (r >= b)  # the first maximal channel picks the sextant
    is_g = (g >= b) & ~is_r
    m_r, m_g = is_r.to(x.dtype), is_g.to(x.dtype)
    m_b = 1 - m_r - m_g
    h = h1 * m_r + h2 * m_g + h3 * m_b  # exact selection: each pixel adds two zeros
    h = h / dc
    h = (h / 6.0) % 1.0
    h = _TWO_PI * h
    keep = (h < _TWO_PI).to(x.dtype)  # a hue rounded up to 2 pi is set to 0, without gradient
    h = h * keep
    h = torch.remainder(h + turn[:, 0], _TWO_PI)  # adjust_hue_raw
    kept = (h < _TWO_PI).to(x.dtype)
    h = h * kept
    keep *= kept
    h = h / _TWO_PI  # hsv_to_rgb
    hi = torch.floor(h * 6) % 6
    f = ((h * 6) % 6) - hi
    e = [(hi == i).to(x.dtype) for i in range(6)]
    # Rows of hsv_to_rgb's table (v q p p t v / t v v q p p / p p t v v q) as plateau + slope * f.
    slope = torch.stack((e[1] - e[4], e[3] - e[0], e[5] - e[2]), 1)  # (B, 3, H, W)
    plateau = torch.stack((e[2] + e[3] + e[4], e[0] + e[4] + e[5], e[0] + e[1] + e[2]), 1)
    table = torch.addcmul(plateau, slope, f.unsqueeze(1))
    vs = v * s
    out = torch.addcmul(v, vs, table, value=-1)
    if not record:
        return out, None
    pick = torch.stack((m_b - m_g, m_r - m_b, m_g - m_r), 1)  # num = sum_c pick_c x_c
    num = (x * pick).sum(1, keepdim=True)
    kw = (keep / dc).unsqueeze(1)  # d f = kw (d num - q d delta)
    q = num / dc.unsqueeze(1)
    w_max, w_min = _tie_weights(x, v), _tie_weights(x, low)
    live = (v != 0).to(x.dtype)

    def backward(grad_out: torch.Tensor) -> torch.Tensor:
        g_sum = grad_out.sum(1, keepdim=True)
        g_table = (grad_out * table).sum(1, keepdim=True)
        g_slope = (grad_out * slope).sum(1, keepdim=True)
        coef_num = -vs * g_slope * kw
        coef_delta = -coef_num * q
        coef_v = g_sum - g_table * s  # out = V - (V S) T
        coef_s = -g_table * v
        coef_delta += coef_s / divisor
        coef_v -= coef_s * s / divisor * live
        coef_v += coef_delta
        grad = pick * coef_num
        grad.addcmul_(w_max, coef_v)
        return grad.addcmul_(w_min, -coef_delta)

    return out, backward


_STEPS = (_brightness, _contrast, _saturation, _hue)


def _run(
    x: torch.Tensor, steps: Sequence[Tuple[int, torch.Tensor]], record: bool
) -> Tuple[torch.Tensor, List[Any]]:
    """The clamp, the steps in order and the clamp; with ``record``, the backward tape.

    Tape entries are (B, 3, H, W) slopes of elementwise steps (consecutive ones multiplied into
    one) or backward functions of the HSV steps.
    """
    out, slope = _unit_clamp(x, record)
    tape: List[Any] = [slope] if record else []
    for idx, factor in steps:
        out, back = _STEPS[idx](out, factor, record)
        if record:
            if isinstance(back, torch.Tensor) and isinstance(tape[-1], torch.Tensor):
                tape[-1] = tape[-1] * back
            else:
                tape.append(back)
    out, slope = _unit_clamp(out, record)
    if record:
        if isinstance(tape[-1], torch.Tensor):
            tape[-1] = tape[-1] * slope
        else:
            tape.append(slope)
    return out, tape


class _Jiggle(torch.autograd.Function):
    """The colour steps with their hand-written backward (first order only)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, steps: Sequence[Tuple[int, torch.Tensor]]) -> torch.Tensor:
        out, ctx.tape = _run(x, steps, record=True)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[torch.Tensor, None]:
        for entry in reversed(ctx.tape):
            grad = grad * entry if isinstance(entry, torch.Tensor) else entry(grad)
        return grad, None


class ColourJiggle(K.ColorJiggle):
    """kornia's ``ColorJiggle`` with a fast ``apply_transform`` for 3-channel float32/float64 batches.

    Construction, parameter draws, the p gate and the random order are kornia's own; other inputs
    (a fixed ``order``, another channel count or dtype, forward-mode tangents) take kornia's path.
    The fast path's gradient is first order (no double backward).
    """

    def __init__(
        self,
        brightness: _Range = 0.0,
        contrast: _Range = 0.0,
        saturation: _Range = 0.0,
        hue: _Range = 0.0,
        same_on_batch: bool = False,
        p: float = 1.0,
        keepdim: bool = False,
        order: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__(brightness, contrast, saturation, hue, same_on_batch, p, keepdim, order)
        self.fixed_order = order is not None

    def fast_path(self, input: torch.Tensor) -> bool:
        """Whether ``input`` takes the fast path (else kornia's ``apply_transform``)."""
        return (
            not self.fixed_order
            and input.dim() == 4
            and input.shape[1] == 3
            and input.dtype in (torch.float32, torch.float64)
            and torch.autograd.forward_ad.unpack_dual(input).tangent is None
        )

    def apply_transform(
        self,
        input: torch.Tensor,
        params: Dict[str, torch.Tensor],
        flags: Dict[str, Any],
        transform: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if not self.fast_path(input):
            return super().apply_transform(input, params, flags, transform)
        steps = []
        for idx in params["order"].tolist():
            factor = params[_FACTOR_KEYS[idx]]
            if not (factor != _NEUTRAL[idx]).any():  # kornia skips a step whose factors are all neutral
                continue
            # kornia's factor arithmetic: brightness f - 1 and hue f * 2 pi before the cast to the image dtype.
            if idx == 0:
                factor = factor - 1
            elif idx == 3:
                factor = factor * 2 * math.pi
            steps.append((idx, factor.to(device=input.device, dtype=input.dtype).view(-1, 1, 1, 1)))
        if torch.is_grad_enabled() and input.requires_grad:
            _clamp_passes_bound()  # cache it outside the autograd Function's no-grad forward
            return _Jiggle.apply(input, steps)
        return _run(input, steps, record=False)[0]
