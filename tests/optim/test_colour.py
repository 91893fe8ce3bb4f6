"""ColourJiggle equals kornia's ColorJiggle: same draws, values and gradients, special pixels included."""

import kornia.augmentation as K
import pytest
import torch

from metamusic.optim.augments import build_augments, method_augments
from metamusic.optim.colour import ColourJiggle


def _image(seed: int, dtype: torch.dtype, n: int = 4, size: int = 12) -> torch.Tensor:
    """Random RGB with black, gray, pure-colour, tied-max, tied-min, exact 0/1 and out-of-range pixels."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    special = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # black
            [0.4, 0.4, 0.4],  # gray
            [1.0, 1.0, 1.0],  # white
            [1.0, 0.0, 0.0],  # pure red: hue exactly 0
            [1.0, 1.0, 0.0],  # yellow: a sextant boundary
            [0.0, 1.0, 1.0],  # cyan
            [0.7, 0.7, 0.2],  # r = g maximal: the first maximal channel picks the sextant
            [0.2, 0.7, 0.7],  # g = b maximal
            [0.7, 0.2, 0.7],  # r = b maximal
            [0.7, 0.2, 0.2],  # tied minimum
            [0.5, 1.0, 0.25],
            [1.0, 0.5, 0.0],
        ],
        dtype=dtype,
    )
    x[:, :, 0, :] = special.T  # one row of special pixels per image
    x[:, :, 1, :] = (x[:, :, 1, :] * 4).round() / 4  # exact quarters, 0 and 1 included
    x[:, :, 2, :] = x[:, :, 2, :] * 1.4 - 0.2  # outside [0, 1]: the input clamp
    return x


def _run(cls, x: torch.Tensor, seed: int, aug_args: dict, params=None):
    """Output, input gradient for a fixed random cotangent, and the drawn params."""
    aug = cls(**aug_args)
    xi = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = aug(xi) if params is None else aug(xi, params=params)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1000), dtype=x.dtype)
    (y * w).sum().backward()
    return y.detach(), xi.grad, aug._params


FULL = dict(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, p=0.7)
STRONG = dict(brightness=0.5, contrast=0.5, saturation=(0.0, 3.0), hue=0.5, p=1.0)
HSV_ONLY = dict(hue=0.01, saturation=0.01, p=0.7)  # the "updated" cut method's


@pytest.mark.parametrize("args", [FULL, STRONG, HSV_ONLY])
@pytest.mark.parametrize("dtype,atol,gtol", [(torch.float64, 1e-12, 1e-9), (torch.float32, 1e-6, 1e-5)])
def test_values_and_gradients_equal_kornia(args, dtype, atol, gtol):
    orders = set()
    for seed in range(12):
        x = _image(seed, dtype)
        y0, g0, p0 = _run(K.ColorJiggle, x, seed, args)
        y1, g1, p1 = _run(ColourJiggle, x, seed, args)
        assert p0.keys() == p1.keys() and all(torch.equal(p0[k], p1[k]) for k in p0)  # same draws
        orders.add(tuple(p0["order"].tolist()))
        torch.testing.assert_close(y1, y0, atol=atol, rtol=0)
        # float32: both gradients carry rounding of order eps / delta at low saturation (rtol too).
        torch.testing.assert_close(g1, g0, atol=gtol, rtol=gtol)
    assert len(orders) > 4  # many random orders were exercised


def test_special_pixels_gradient_per_step():
    """Each step alone and in pairs on the special pixels, float64: kornia's subgradients exactly."""
    x = _image(3, torch.float64, n=3)
    factors = {
        "brightness_factor": torch.tensor([1.0, 1.1, 0.95]),  # 1.0: clamps to exactly 1 and 0 pixels
        "contrast_factor": torch.tensor([1.0, 1.2, 0.9]),
        "saturation_factor": torch.tensor([1.0, 2.5, 0.5]),
        "hue_factor": torch.tensor([0.0, 1 / 6, -0.25]),  # 0 and a sextant turn keep boundary hues on a boundary
    }
    for order in ([3], [2], [0, 3], [2, 3], [3, 2], [1, 2], [3, 0, 2, 1]):
        params = dict(factors, order=torch.tensor(order), batch_prob=torch.ones(3, dtype=torch.bool))
        for key in factors:  # steps not in the order stay neutral, so kornia skips them too
            if "brightness_contrast_saturation_hue".split("_").index(key.split("_")[0]) not in order:
                params[key] = torch.full((3,), 0.0 if key == "hue_factor" else 1.0)
        y0, g0, _ = _run(K.ColorJiggle, x, 0, dict(p=1.0), params)
        y1, g1, _ = _run(ColourJiggle, x, 0, dict(p=1.0), params)
        torch.testing.assert_close(y1, y0, atol=1e-12, rtol=0)
        torch.testing.assert_close(g1, g0, atol=1e-9, rtol=1e-9)


def test_no_grad_and_fallbacks_equal_kornia():
    x = _image(5, torch.float32)
    for args, inp in (
        (dict(FULL, order=(3, 2, 1, 0)), x),  # a fixed order: kornia's dispatcher
        (FULL, x.half()),  # half precision
        (dict(brightness=0.2, contrast=0.2, p=1.0), x[:, :1]),  # one channel
        (FULL, x),  # the fast path without gradient
    ):
        outs = []
        for cls in (K.ColorJiggle, ColourJiggle):
            torch.manual_seed(7)
            with torch.no_grad():
                outs.append(cls(**args)(inp))
        torch.testing.assert_close(outs[1], outs[0], atol=2e-6, rtol=0)
    aug = ColourJiggle(**dict(FULL, order=(3, 2, 1, 0)))
    assert not aug.fast_path(x) and ColourJiggle(**FULL).fast_path(x)
    assert not ColourJiggle(**FULL).fast_path(x.half()) and not ColourJiggle(**FULL).fast_path(x[:, :1])


def test_fixed_order_gradient_through_fallback():
    x = _image(2, torch.float64)
    args = dict(FULL, order=(0, 3, 2))
    y0, g0, _ = _run(K.ColorJiggle, x, 4, args)
    y1, g1, _ = _run(ColourJiggle, x, 4, args)
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(g1, g0)


def test_pipelines_use_colour_jiggle():
    assert type(build_augments(("Ji",), 16)[0]) is ColourJiggle
    assert type(build_augments(("Af", "Ji"), 16, variant="nrupdated")[1]) is ColourJiggle
    for method in ("updated", "updatedpooling"):
        assert sum(type(m) is ColourJiggle for m in method_augments(method, (), 16)) == 1
        assert not any(type(m) is K.ColorJiggle for m in method_augments(method, (), 16))


def test_clamp_step_gradient_follows_torch_clamp(monkeypatch):
    """Brightness/contrast clamps: gradient scale on (0, 1) (torch 2.14) or [0, 1] (torch <= 2.9)."""
    from metamusic.optim import colour

    x = torch.tensor([[-0.5, 0.0, 0.3, 1.0, 1.4]], dtype=torch.float64).view(1, 1, 1, 5)
    scale = torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64)
    expected = {}
    for closed in (False, True):
        monkeypatch.setattr(colour, "_clamp_passes_bound", lambda closed=closed: closed)
        xi = (x / 2).requires_grad_(True)  # y = 2 * x/2: -0.5, 0, 0.3, 1, 1.4
        y = colour._ClampStep.apply(xi, None, scale)
        assert y.flatten().tolist() == [0.0, 0.0, 0.3, 1.0, 1.0]
        (grad,) = torch.autograd.grad(y.sum(), xi)
        expected[closed] = grad.flatten().tolist()
    assert expected[False] == [0.0, 0.0, 2.0, 0.0, 0.0]
    assert expected[True] == [0.0, 2.0, 2.0, 2.0, 0.0]
    monkeypatch.undo()
    t = torch.zeros((), requires_grad=True)
    assert colour._clamp_passes_bound() == bool(torch.autograd.grad(t.clamp(0.0, 1.0), t)[0] == 1)


def test_gated_samples_are_returned_unchanged():
    """apply_transform works only on the samples the p gate picked; the others pass through as they came."""
    x = _image(9, torch.float32, n=6)
    aug = ColourJiggle(**FULL)
    torch.manual_seed(3)
    aug(x)
    params = dict(aug._params)
    params["batch_prob"] = torch.tensor([True, False, True, False, False, True])
    out = aug.apply_transform(x, params, {})
    assert torch.equal(out[~params["batch_prob"]], x[~params["batch_prob"]])
    full = aug.apply_transform(x, dict(params, batch_prob=torch.ones(6, dtype=torch.bool)), {})
    torch.testing.assert_close(out[params["batch_prob"]], full[params["batch_prob"]], atol=1e-6, rtol=0)
    assert not torch.allclose(full[~params["batch_prob"]], x[~params["batch_prob"]], atol=1e-3)
