"""Prompts and the spherical-distance prompt loss of VQGAN-CLIP, as pure functions.

A prompt string is ``"text:weight:stop"`` (weight defaults to 1, stop to -inf); ``|`` separates
prompts used together and ``^`` separates the phrases of a story (VQGAN-CLIP's ``-p`` syntax).
A :class:`Target` holds unit-normalised CLIP-space embeddings plus that weight and stop; the
loss of one target follows the ``Prompt`` module of the VQGAN-CLIP notebook (Crowson, 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from metamusic.errors import InputError
from metamusic.ops import replace_grad, spherical_distance

__all__ = [
    "Target",
    "blend_targets",
    "compose_prompt",
    "image_prompt_size",
    "mean_targets",
    "noise_targets",
    "parse_prompt",
    "split_prompts",
    "split_story",
    "target_loss",
]


def _as_float(field: str) -> float | None:
    """``float(field)`` or None when the field is not a number."""
    try:
        return float(field)
    except ValueError:
        return None


def parse_prompt(s: str) -> tuple[str, float, float]:
    """Split ``"text:weight:stop"`` into (text, weight, stop), as VQGAN-CLIP's parse_prompt.

    Fields are taken from the right (at most two) and only when they are numbers, so colons
    inside the text or a URL survive ("http://host/a.png:0.5" -> ("http://host/a.png", 0.5, -inf)).
    The reference raises on a URL without weight; here such a string is all text.
    """
    weight, stop = 1.0, -math.inf
    text = s
    parts = s.rsplit(":", 2)
    if len(parts) >= 2 and (last := _as_float(parts[-1])) is not None:
        if len(parts) == 3 and (middle := _as_float(parts[1])) is not None:
            text, weight, stop = parts[0], middle, last
        else:
            text, weight = s.rsplit(":", 1)[0], last
    if math.isnan(weight) or math.isnan(stop):
        raise InputError(f"prompt {s!r}: weight and stop must be numbers, not nan")
    return text.strip(), weight, stop


def image_prompt_size(image_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[int, int]:
    """(W, H) an image prompt is resized to before its cut-outs (nerdyrodent/VQGAN-CLIP ``resize_image``).

    The image's aspect ratio with the area of the output image (or its own area, if smaller).
    """
    (w, h), (ow, oh) = image_size, out_size
    if min(w, h, ow, oh) < 1:
        raise InputError(f"image prompt size {w}x{h} or output size {ow}x{oh} is empty")
    ratio, area = w / h, min(w * h, ow * oh)
    return max(1, round((area * ratio) ** 0.5)), max(1, round((area / ratio) ** 0.5))


def split_prompts(s: str) -> list[str]:
    """The ``|``-separated prompts of one phrase, stripped, empty ones dropped."""
    return [p.strip() for p in s.split("|") if p.strip()]


def split_story(s: str) -> list[str]:
    """The ``^``-separated story phrases (each may hold ``|``-separated prompts), stripped."""
    return [p.strip() for p in s.split("^") if p.strip()]


@dataclass(frozen=True, eq=False)
class Target:
    """Embeddings to move toward (weight > 0) or away from (weight < 0).

    embed: (N, D), unit-normalised on construction (a (D,) vector becomes (1, D)).
    stop: distances below it get no gradient (VQGAN-CLIP's prompt "stop").
    """

    embed: torch.Tensor  # (N, D)
    weight: float = 1.0
    stop: float = -math.inf

    def __post_init__(self) -> None:
        embed = self.embed
        if embed.ndim == 1:
            embed = embed[None]
        if embed.ndim != 2 or embed.shape[0] == 0:
            shape = tuple(self.embed.shape)
            raise InputError(f"target embedding must have shape (N, D), got {shape}")
        if not torch.isfinite(embed).all():
            raise InputError("target embedding contains nan or inf values")
        object.__setattr__(self, "embed", F.normalize(embed.detach().float(), dim=-1))
        object.__setattr__(self, "weight", float(self.weight))
        object.__setattr__(self, "stop", float(self.stop))

    def to(self, device: torch.device | str) -> "Target":
        """The same target with its embedding on ``device``."""
        return Target(self.embed.to(device), self.weight, self.stop)


def target_loss(image_embeds: torch.Tensor, target: Target) -> torch.Tensor:
    """VQGAN-CLIP prompt loss: |w| * mean over (cut-out, target row) of sign(w) * distance.

    distance = 2 * arcsin(|a - b| / 2)^2 of unit vectors; its forward value is kept but its
    gradient is that of max(distance, stop), so pairs already closer than ``stop`` stop pulling.
    image_embeds: (M, D) -> scalar (float32).
    """
    a = image_embeds.float()[:, None, :]  # (M, 1, D)
    b = target.embed.to(a.device)[None, :, :]  # (1, N, D)
    sign = 1.0 if target.weight > 0 else -1.0 if target.weight < 0 else 0.0
    dists = spherical_distance(a, b) * sign  # (M, N)
    floored = torch.clamp(dists, min=target.stop) if target.stop > -math.inf else dists
    return abs(target.weight) * replace_grad(dists, floored).mean()


def blend_targets(
    text: torch.Tensor, audio: torch.Tensor, text_weight: float, audio_weight: float
) -> Target:
    """One fused target: normalise(text_weight * t + audio_weight * a) of unit embeddings.

    Music2Video's "fusion" of lyric and audio guidance. text, audio: (D,) or (1, D) each (several
    rows are averaged first). Blending into one direction differs from two separate targets:
    the image is pulled to the point between them on the sphere, not to both in turn.
    The result has weight 1 and no stop.
    """
    if text_weight < 0 or audio_weight < 0 or text_weight + audio_weight <= 0:
        raise InputError(
            "blend weights must be >= 0 and not both 0, "
            f"got text {text_weight}, audio {audio_weight}"
        )
    t = F.normalize(text.detach().float().reshape(-1, text.shape[-1]), dim=-1).mean(0)  # (D,)
    a = F.normalize(audio.detach().float().reshape(-1, audio.shape[-1]), dim=-1).mean(0)  # (D,)
    if t.shape != a.shape:
        raise InputError(f"text and audio embeddings differ in size: {t.shape[0]} vs {a.shape[0]}")
    t, a = F.normalize(t, dim=0), F.normalize(a.to(t.device), dim=0)
    mixed = text_weight * t + audio_weight * a  # (D,)
    if mixed.norm() < 1e-6:
        raise InputError("text and audio embeddings cancel out in the blend; change the weights")
    return Target(mixed[None])


def mean_targets(groups: Sequence[Sequence[Target]], shares: Sequence[float]) -> list[Target]:
    """The targets whose loss is the ``shares``-weighted mean of each group's summed loss.

    The loss of a group is the sum of its targets' losses (:func:`target_loss`), and scaling a
    weight by s > 0 scales that target's loss by s, so every target of group g with its weight
    times shares[g] / sum(shares) gives exactly sum_g shares[g] * loss_g / sum(shares). Targets
    equal in embedding, stop and sign of weight (e.g. the shared -p, -ip and noise prompts, which
    every segment carries) are merged into one by adding their weights, which is exact too. Ours,
    for a keyframe spanning several segments (``--keyframe_every``): the groups are the segments'
    targets and the shares their durations. A single group comes back as it is.
    """
    if len(groups) != len(shares):
        raise InputError(f"{len(groups)} groups of targets but {len(shares)} shares")
    if any(not s >= 0 for s in shares) or not sum(shares) > 0:
        raise InputError(f"target shares must be >= 0 and not all 0, got {list(shares)}")
    if len(groups) == 1:
        return list(groups[0])
    total = float(sum(shares))
    merged: list[Target] = []
    for group, share in zip(groups, shares):
        for target in group:
            weight = target.weight * share / total
            for k, seen in enumerate(merged):
                if (seen.stop == target.stop and (seen.weight > 0) == (target.weight > 0)
                        and seen.embed.shape == target.embed.shape and torch.equal(seen.embed, target.embed)):
                    merged[k] = Target(seen.embed, seen.weight + weight, seen.stop)
                    break
            else:
                if weight != 0:
                    merged.append(Target(target.embed, weight, target.stop))
    return merged


def noise_targets(
    seeds: Sequence[int],
    weights: Sequence[float],
    dim: int,
    device: torch.device | str = "cpu",
) -> list[Target]:
    """VQGAN-CLIP noise prompts: one standard-normal (1, dim) embedding per seed.

    Each embedding is drawn from its own CPU ``torch.Generator().manual_seed(seed)`` (as the
    reference does), so a seed gives the same prompt on every device.
    """
    if len(seeds) != len(weights):
        raise InputError(
            f"{len(seeds)} noise prompt seeds but {len(weights)} weights: give one weight per seed"
        )
    targets = []
    for seed, weight in zip(seeds, weights):
        gen = torch.Generator().manual_seed(int(seed))
        embed = torch.randn(1, dim, generator=gen)  # (1, D)
        targets.append(Target(embed.to(device), float(weight)))
    return targets


def compose_prompt(text: str, prefix: str | None = None, theme: str | None = None) -> str:
    """A lyric's CLIP prompt: ``"<prefix> <lyric>, <theme>"`` (--prompt_prefix, --theme)."""
    text = text.strip()
    if prefix and prefix.strip():
        text = f"{prefix.strip()} {text}"
    if theme and theme.strip():
        text = f"{text.rstrip(' ,.')}, {theme.strip()}"
    return text
