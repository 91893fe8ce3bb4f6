"""Colour jitter with the meaning of kornia's ``ColorJiggle``, several times faster on RGB floats.

kornia's ``ColorJiggle`` (brightness x + (f - 1), contrast x * f, HSV saturation * f, hue turned
by f * 2 pi, in a random order: kornia 0.5.4's ``ColorJitter``) converts pixels to HSV and back
with branch-free ``torch.where`` chains, and its autograd backward replays them. Per pixel the
hue step is V - V S T_n with hsv_to_rgb's table entry T_n in {0, f, 1, 1 - f}, and the
saturation step scales each channel's distance from the minimum, so :class:`ColourJiggle`
makes every discrete choice (hue sextant, table entry, wrap-around) with kornia's own
arithmetic and gives each step a hand-written backward of a few per-pixel sums
(``_Step``, ``_ClampStep``, ``_UnitClamp``); it transforms only the samples the p gate picked.
Values and gradients are kornia's, subgradients included: ``amax`` and ``amin`` split the
gradient evenly among tied channels, the hue sextant is the first maximal channel's, black and
gray pixels keep kornia's guarded divisors, step clamps follow ``torch.clamp`` and the outer
clamps keep gradient 1 on the closed range [0, 1].
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


@functools.lru_cache(maxsize=None)
def _clamp_passes_bound() -> bool:
    """Whether ``torch.clamp``'s gradient is 1 at a bound (torch <= 2.9) or 0 (torch 2.14)."""
    t = torch.zeros((), requires_grad=True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(t.clamp(0.0, 1.0), t)
    return bool(grad == 1)


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_c a_c b_c over dim 1, plane by plane (no (B, C, H, W) temporary): (B, C, H, W) -> (B, 1, H, W)."""
    out = a[:, :1] * b[:, :1]
    for c in range(1, a.shape[1]):
        out.addcmul_(a[:, c : c + 1], b[:, c : c + 1])
    return out


def _ties(x: torch.Tensor, extreme: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """amax/amin's backward split: the channels equal to ``extreme`` (B, 3, H, W) and their count (B, 1, H, W).

    The gradient of ``extreme`` reaches each of them divided by the count.
    """
    hit = torch.eq(x, extreme, out=torch.empty_like(x))
    return hit, hit.sum(1, keepdim=True)


class _ClampStep(torch.autograd.Function):
    """Brightness (x + shift) or contrast (x * scale), then ``torch.clamp`` to [0, 1].

    The gradient is ``scale`` where 0 < y < 1 (torch 2.14's clamp) or 0 <= y <= 1 (older torch), else 0;
    for y in (0, 1) the clamped value c has c (1 - c) > 0, and outside it c is 0 or 1.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, shift: Optional[torch.Tensor], scale: Optional[torch.Tensor]):
        y = x + shift if shift is not None else x * scale
        if _clamp_passes_bound():
            ctx.save_for_backward(y, scale)
            ctx.closed = True
            return y.clamp(0.0, 1.0)
        out = y.clamp_(0.0, 1.0)
        ctx.save_for_backward(out, scale)
        ctx.closed = False
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        saved, scale = ctx.saved_tensors
        if ctx.closed:  # saved = y: 1 on [0, 1]
            slope = torch.eq(saved.clamp(0.0, 1.0), saved, out=torch.empty_like(grad))
        else:  # saved = clamp(y): 1 on (0, 1)
            slope = torch.sub(1.0, saved).mul_(saved).sign_()
        slope.mul_(grad)
        return (slope.mul_(scale) if scale is not None else slope), None, None


class _UnitClamp(torch.autograd.Function):
    """kornia's outer clamp: values ``x.clamp(0, 1)``, gradient 1 on the closed range [0, 1], 0 outside."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clamp(0.0, 1.0)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors
        return torch.eq(out, x, out=torch.empty_like(grad)).mul_(grad)


class _Step(torch.autograd.Function):
    """One HSV step (``_saturation`` or ``_hue``) with its hand-written backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: torch.Tensor, step: Callable) -> torch.Tensor:
        out, ctx.step_backward = step(x, factor, True)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[torch.Tensor, None, None]:
        return ctx.step_backward(grad), None, None


def _is(a: torch.Tensor, b: Union[torch.Tensor, float], compare: Callable = torch.eq) -> torch.Tensor:
    """1.0 where ``compare(a, b)``, else 0.0, in ``a``'s dtype (float masks: bool tensors are slow on CPU)."""
    return compare(a, b, out=torch.empty_like(a))


def _value_saturation(x: torch.Tensor):
    """V = max, min, delta = V - min, the divisor of S = delta / divisor, S and 1 - black; (B, 1, H, W) each.

    The divisor is kornia's max + eps, or 1 where max == 0 (selected exactly: d - d * 1 + 1).
    """
    v = x.amax(1, keepdim=True)
    low = x.amin(1, keepdim=True)
    delta = v - low
    black = _is(v, 0.0)
    divisor = v + _EPS
    divisor.addcmul_(divisor, black, value=-1).add_(black)
    return v, low, delta, divisor, delta / divisor, black.neg_().add_(1.0)


def _saturation(x: torch.Tensor, factor: torch.Tensor, record: bool) -> Tuple[torch.Tensor, Any]:
    """HSV saturation * f in kornia's float closed form: each channel's distance from the minimum scaled.

    out = (x - min) * (V S' / delta) + (V - V S'), S' = clamp(S f, 0, 1), delta 0 -> 1.
    """
    v, low, delta, divisor, s, live = _value_saturation(x)
    sf = s * factor
    s2 = sf.clamp(0.0, 1.0)
    scaled = v * s2  # the new delta
    gray = _is(delta, 0.0)
    delta_div = delta + gray  # kornia's delta, or 1 where it is 0
    k = scaled / delta_div
    xm = x - low  # (B, 3, H, W)
    out = xm * k  # kornia's operations in kornia's order: the same float32 rounding
    out += v - scaled
    if not record:
        return out, None
    (hit_max, n_max), (hit_min, n_min) = _ties(x, v), _ties(x, low)
    if _clamp_passes_bound():  # torch.clamp's slope on [0, 1]
        s2_slope = _is(s2, sf)
    else:  # on (0, 1): s2 (1 - s2) > 0 exactly there
        s2_slope = torch.sub(1.0, s2).mul_(s2).sign_()
    s2_slope.mul_(factor)
    not_gray = gray.neg_().add_(1.0)

    def backward(g: torch.Tensor) -> torch.Tensor:
        # out_c = (x_c - m) k + V - A, A = V S', k = A / delta, S = delta / divisor, delta = V - m.
        g_sum = g.sum(1, keepdim=True)
        g_xm = _channel_dot(g, xm)
        coef_a = g_xm / delta_div - g_sum
        coef_delta = -g_xm * scaled / delta_div.square() * not_gray
        coef_v = g_sum + coef_a * s2
        coef_s = coef_a * v * s2_slope
        coef_delta += coef_s / divisor
        coef_v -= coef_s * s / divisor * live
        coef_v += coef_delta
        coef_min = -k * g_sum - coef_delta
        grad = g * k
        grad.addcmul_(hit_max, coef_v.div_(n_max))
        return grad.addcmul_(hit_min, coef_min.div_(n_min))

    return out, backward


def _hue(x: torch.Tensor, turn: torch.Tensor, record: bool) -> Tuple[torch.Tensor, Any]:
    """Hue turned by ``turn`` radians (B, 1, 1, 1): kornia's hsv_to_rgb(adjust_hue_raw(rgb_to_hsv(x))).

    Per pixel out_n = V - V S T_n, T_n = P_n + c_n f from hsv_to_rgb's table (0, f, 1, 1 - f), f the
    fractional sextant of the turned hue; the sextant comes from rgb_to_hsv's and adjust_hue_raw's
    arithmetic repeated operation for operation, so boundary pixels fall where kornia's do. With
    hue6 = base + num / delta (num: the difference of the two channels after the first maximal
    one), d f = d hue6 = (d num - q d delta) / delta, q = num / delta, unless a hue wrapped to 0.
    """
    v, low, delta, divisor, s, live = _value_saturation(x)  # (B, 1, H, W)
    r, g, b = x.unbind(1)  # (B, H, W)
    v1 = v[:, 0]
    dc = delta[:, 0] + _is(delta[:, 0], 0.0)  # kornia's delta, or 1 where it is 0
    rc, gc, bc = v1 - r, v1 - g, v1 - b
    # The first maximal channel picks the sextant: r if r >= g and r >= b, else g if g >= b, else b.
    m_r = _is(r, g, torch.ge).mul_(_is(r, b, torch.ge))
    m_g = _is(g, b, torch.ge).mul_(1.0 - m_r)
    m_b = 1.0 - m_r - m_g
    # rgb_to_hsv's h1 = bc - gc, h2 = (rc - bc) + 2 dc, h3 = (gc - rc) + 4 dc: num, then the base. The
    # selection multiplies by exact ones and zeros and adds zeros, so h is rgb_to_hsv's to the bit.
    num = (gc - rc).mul_(m_b)
    num += (rc.sub_(bc)).mul_(m_g)
    num += (bc.sub_(gc)).mul_(m_r)
    h = (m_g * 2.0).add_(m_b * 4.0).mul_(dc).add_(num)
    h.div_(dc).div_(6.0).remainder_(1.0)
    h.mul_(_TWO_PI)
    keep = torch.lt(h, _TWO_PI, out=torch.empty_like(h))  # a hue rounded up to 2 pi is set to 0, without gradient
    h.mul_(keep)
    h.add_(turn[:, 0]).remainder_(_TWO_PI)  # adjust_hue_raw
    kept = torch.lt(h, _TWO_PI, out=torch.empty_like(h))
    h.mul_(kept)
    keep.mul_(kept)
    h6 = h.div_(_TWO_PI).mul_(6)  # hsv_to_rgb
    hi = torch.floor(h6).remainder_(6)
    f = h6.remainder_(6).sub_(hi)
    # Rows of hsv_to_rgb's table (v q p p t v / t v v q p p / p p t v v q) as plateau + slope * f.
    e = [torch.eq(hi, float(i), out=torch.empty_like(hi)) for i in range(6)]  # sextant one-hot planes
    shape = (hi.shape[0], 3, *hi.shape[1:])
    slope = torch.empty(shape, dtype=x.dtype, device=x.device)  # dT/df: (B, 3, H, W)
    plateau = torch.empty(shape, dtype=x.dtype, device=x.device)
    for n, (up, down, a, b_, c) in enumerate(((1, 4, 2, 3, 4), (3, 0, 0, 4, 5), (5, 2, 0, 1, 2))):
        torch.sub(e[up], e[down], out=slope[:, n])
        torch.add(e[a], e[b_], out=plateau[:, n]).add_(e[c])
    table = plateau.addcmul_(slope, f.unsqueeze(1))
    vs = v * s
    out = torch.addcmul(v, vs, table, value=-1)
    if not record:
        return out, None
    pick = torch.empty(shape, dtype=x.dtype, device=x.device)  # num = sum_c pick_c x_c
    torch.sub(m_b, m_g, out=pick[:, 0])
    torch.sub(m_r, m_b, out=pick[:, 1])
    torch.sub(m_g, m_r, out=pick[:, 2])
    kw = (keep / dc).unsqueeze(1)  # d f = kw (d num - q d delta)
    q = (num / dc).unsqueeze(1)
    (hit_max, n_max), (hit_min, n_min) = _ties(x, v), _ties(x, low)

    def backward(grad_out: torch.Tensor) -> torch.Tensor:
        g_sum = grad_out.sum(1, keepdim=True)
        g_table = _channel_dot(grad_out, table)
        g_slope = _channel_dot(grad_out, slope)
        coef_num = -vs * g_slope * kw
        coef_delta = -coef_num * q
        coef_v = g_sum - g_table * s  # out = V - (V S) T
        coef_s = -g_table * v
        coef_delta += coef_s / divisor
        coef_v -= coef_s * s / divisor * live
        coef_v += coef_delta
        grad = pick * coef_num
        grad.addcmul_(hit_max, coef_v.div_(n_max))
        return grad.addcmul_(hit_min, coef_delta.neg_().div_(n_min))

    return out, backward


def _run(x: torch.Tensor, steps: Sequence[Tuple[int, torch.Tensor]]) -> torch.Tensor:
    """The outer clamp, the steps in order, the outer clamp; with autograd when ``x`` needs a gradient."""
    record = torch.is_grad_enabled() and x.requires_grad
    out = _UnitClamp.apply(x) if record else x.clamp(0.0, 1.0)
    for idx, factor in steps:
        if idx < 2 and record:
            out = _ClampStep.apply(out, factor, None) if idx == 0 else _ClampStep.apply(out, None, factor)
        elif idx < 2:
            out = (out + factor if idx == 0 else out * factor).clamp_(0.0, 1.0)
        else:
            step = _saturation if idx == 2 else _hue
            out = _Step.apply(out, factor, step) if record else step(out, factor, False)[0]
    if steps and steps[-1][0] < 2:  # a brightness or contrast step ends in [0, 1]: the clamp is the identity
        return out
    return _UnitClamp.apply(out) if record else out.clamp_(0.0, 1.0)


class ColourJiggle(K.ColorJiggle):
    """kornia's ``ColorJiggle`` with a fast ``apply_transform`` for 3-channel float32/float64 batches.

    Construction, parameter draws, the p gate and the random order are kornia's own; other inputs
    (a fixed ``order``, another channel count or dtype, forward-mode tangents) take kornia's path.
    The fast path transforms only the samples the p gate picked (``batch_prob``): kornia's blend
    keeps the input for the others, so ``apply_transform`` returns them unchanged. Its gradient is
    first order (no double backward).
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
        chosen = params.get("batch_prob")
        chosen = None if chosen is None else torch.atleast_1d(chosen > 0.5).to(input.device)
        subset = chosen is not None and chosen.shape[0] == input.shape[0] and not bool(chosen.all())
        rows = chosen.nonzero()[:, 0] if subset else None
        steps = []
        for idx in params["order"].tolist():
            factor = params[_FACTOR_KEYS[idx]]
            # kornia skips a step whose factors are all neutral, over the whole batch (gated samples included).
            if not (factor != _NEUTRAL[idx]).any():
                continue
            # kornia's factor arithmetic: brightness f - 1 and hue f * 2 pi before the cast to the image dtype.
            if idx == 0:
                factor = factor - 1
            elif idx == 3:
                factor = factor * 2 * math.pi
            factor = factor.to(device=input.device, dtype=input.dtype).view(-1, 1, 1, 1)
            steps.append((idx, factor[rows] if subset else factor))
        _clamp_passes_bound()  # cache it outside the autograd Functions' no-grad forward
        if not subset:
            return _run(input, steps)
        # Only the samples the p gate picked: kornia's blend discards the others, which come back unchanged.
        out = input.detach().clone()
        return out.index_copy_(0, rows, _run(input.index_select(0, rows), steps))
