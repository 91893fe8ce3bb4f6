"""Initial latents and noise images, and the per-channel latent bounds of VQGAN-CLIP."""

from __future__ import annotations

import torch

from metamusic.errors import InputError

__all__ = ["clamp_latent", "noise_image", "random_latent", "z_bounds"]


def random_latent(
    codebook: torch.Tensor, grid: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """A latent of uniformly random codebook tokens (VQGAN-CLIP's one_hot @ codebook).

    codebook: (K, C), grid: (h, w) tokens -> z: (1, C, h, w) on the codebook's device. Indexing
    the codebook gives exactly the rows the one-hot product selects.
    """
    h, w = grid
    if h < 1 or w < 1:
        raise InputError(f"latent grid must be at least 1x1 tokens, got {h}x{w}")
    k, c = codebook.shape
    tokens = torch.randint(k, (h * w,), generator=generator, device=generator.device)  # (h*w,)
    z = codebook[tokens.to(codebook.device)]  # (h*w, C)
    return z.view(1, h, w, c).permute(0, 3, 1, 2).contiguous()  # (1, C, h, w)


def noise_image(kind: str, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """A random start image in [0, 1], (1, 3, H, W), as VQGAN-CLIP's ``-in pixels|gradient``.

    pixels: independent uniform bytes 0..254 per pixel and channel (random_noise_image).
    gradient (random_gradient_image): red ramps left->right from 0 to r1, green top->bottom
    from 0 to r2, blue top->bottom from r0 to r3 (r0 in 0..254, r1 1..254, r2 2..254,
    r3 3..127), truncated to bytes. size is (W, H); values are byte levels / 255.
    Encode the result with the VQGAN encoder (image * 2 - 1) to get a latent.
    """
    width, height = size
    dev = generator.device
    if kind == "pixels":
        img = torch.randint(0, 255, (1, 3, height, width), generator=generator, device=dev)
        return img.float() / 255
    if kind == "gradient":
        lo = torch.tensor([0, 1, 2, 3])
        hi = torch.tensor([255, 255, 255, 128])
        r = lo + (torch.rand(4, generator=generator, device=dev).cpu() * (hi - lo)).long()
        r0, r1, r2, r3 = r.tolist()
        across = torch.linspace(0, 1, width, dtype=torch.float64)  # (W,)
        down = torch.linspace(0, 1, height, dtype=torch.float64)[:, None]  # (H, 1)
        red = (r1 * across).expand(height, width)
        green = (r2 * down).expand(height, width)
        blue = (r0 + (r3 - r0) * down).expand(height, width)
        img = torch.stack([red, green, blue]).floor()  # (3, H, W) byte levels
        return (img[None].float() / 255).to(dev)
    raise InputError(f"unknown init noise {kind!r}; valid: pixels gradient")


def z_bounds(codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel min and max of the codebook, each (1, C, 1, 1): the box z is kept in."""
    lo = codebook.detach().min(dim=0).values[None, :, None, None]  # (1, C, 1, 1)
    hi = codebook.detach().max(dim=0).values[None, :, None, None]  # (1, C, 1, 1)
    return lo, hi


def clamp_latent(z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Clamp z in place to [lo, hi] per channel without recording it for autograd; returns z."""
    with torch.no_grad():
        z.copy_(torch.minimum(torch.maximum(z, lo.to(z)), hi.to(z)))
    return z
