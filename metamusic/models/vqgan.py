"""VQGAN autoencoder (Esser, Rombach & Ommer 2021, "Taming Transformers"), tensors in, tensors out.

The layout and parameter names match taming-transformers' ``VQModel`` and ``GumbelVQ`` (their
``diffusionmodules`` Encoder/Decoder and ``vqvae`` quantizers), so an official ``state_dict``
loads with ``strict=True`` once the training-only ``loss.*`` keys are dropped. Reading files is
the job of :mod:`metamusic.models.vqgan_loader`; nothing here touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.checkpoint import checkpoint

from metamusic.models.norm import GroupNorm
from metamusic.models.winograd import winograd_conv3x3, winograd_helps
from metamusic.ops import vector_quantize

VQMODEL_TARGET = "taming.models.vqgan.VQModel"
GUMBEL_TARGET = "taming.models.vqgan.GumbelVQ"
NET2NET_TARGET = "taming.models.cond_transformer.Net2NetTransformer"
_FIRST_STAGE_TARGETS = (VQMODEL_TARGET, GUMBEL_TARGET)


@dataclass(frozen=True)
class VQGANConfig:
    """Architecture of a taming VQGAN: the ``embed_dim``/``n_embed``/``ddconfig`` of its yaml."""

    embed_dim: int
    n_embed: int
    z_channels: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    resolution: int
    in_channels: int = 3
    out_ch: int = 3
    dropout: float = 0.0
    double_z: bool = False
    gumbel: bool = False
    # The taming class the yaml names (VQModel, GumbelVQ or Net2NetTransformer): it decides
    # where the first-stage weights sit inside the checkpoint.
    target: str = field(default=VQMODEL_TARGET, compare=False)

    @property
    def factor(self) -> int:
        """Downsampling factor between image pixels and latent positions."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def state_dict_prefix(self) -> str:
        """Prefix of the first-stage keys in a checkpoint trained with this config."""
        return "first_stage_model." if self.target == NET2NET_TARGET else ""

    @classmethod
    def from_omegaconf(cls, cfg: Any) -> "VQGANConfig":
        """Read a taming yaml (whole file or its ``model`` node; OmegaConf or plain dict).

        Raises ValueError naming the offending entry when the config is not a taming VQGAN.
        """
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        if not isinstance(cfg, Mapping):
            raise ValueError("expected a mapping at the top level")
        model = cfg.get("model", cfg)
        if not isinstance(model, Mapping):
            raise ValueError("'model' is not a mapping")
        target = model.get("target")
        params = model.get("params")
        if not isinstance(params, Mapping):
            raise ValueError("missing model.params")
        outer = target
        if target == NET2NET_TARGET:
            stage = params.get("first_stage_config")
            if not isinstance(stage, Mapping) or not isinstance(stage.get("params"), Mapping):
                raise ValueError("Net2NetTransformer config without params.first_stage_config")
            target, params = stage.get("target"), stage["params"]
        if target not in _FIRST_STAGE_TARGETS:
            raise ValueError(
                f"model target {target!r} is not a VQGAN "
                f"(expected {VQMODEL_TARGET}, {GUMBEL_TARGET} or {NET2NET_TARGET})"
            )
        dd = params.get("ddconfig")
        if not isinstance(dd, Mapping):
            raise ValueError("missing params.ddconfig")
        try:
            config = cls(
                embed_dim=int(params["embed_dim"]),
                n_embed=int(params["n_embed"]),
                z_channels=int(dd["z_channels"]),
                ch=int(dd["ch"]),
                ch_mult=tuple(int(m) for m in dd["ch_mult"]),
                num_res_blocks=int(dd["num_res_blocks"]),
                attn_resolutions=tuple(int(r) for r in dd.get("attn_resolutions", ())),
                resolution=int(dd["resolution"]),
                in_channels=int(dd.get("in_channels", 3)),
                out_ch=int(dd.get("out_ch", 3)),
                dropout=float(dd.get("dropout", 0.0)),
                double_z=bool(dd.get("double_z", False)),
                gumbel=target == GUMBEL_TARGET,
                target=outer,
            )
        except KeyError as exc:
            raise ValueError(f"missing entry {exc.args[0]!r} in params/ddconfig") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad value in params/ddconfig ({exc})") from None
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError if the sizes cannot build a network."""
        if not self.ch_mult or self.num_res_blocks < 1:
            raise ValueError("ch_mult must be non-empty and num_res_blocks >= 1")
        widths = [self.ch * m for m in (1, *self.ch_mult)]
        if min(widths) <= 0 or any(w % 32 for w in widths):
            raise ValueError(f"channel widths {widths} must be positive multiples of 32 (GroupNorm)")
        if self.embed_dim <= 0 or self.n_embed <= 0 or self.z_channels <= 0:
            raise ValueError("embed_dim, n_embed and z_channels must be positive")
        if self.gumbel and self.embed_dim != self.z_channels:
            raise ValueError("GumbelVQ needs embed_dim == z_channels (its proj reads quant_conv's output)")
        if self.double_z:
            raise ValueError("double_z: true is a KL autoencoder, not a VQGAN")

    def to_taming_params(self) -> dict[str, Any]:
        """The ``model.params`` entries (without ``lossconfig``) taming would read."""
        return {
            "embed_dim": self.embed_dim,
            "n_embed": self.n_embed,
            "ddconfig": {
                "double_z": self.double_z,
                "z_channels": self.z_channels,
                "resolution": self.resolution,
                "in_channels": self.in_channels,
                "out_ch": self.out_ch,
                "ch": self.ch,
                "ch_mult": list(self.ch_mult),
                "num_res_blocks": self.num_res_blocks,
                "attn_resolutions": list(self.attn_resolutions),
                "dropout": self.dropout,
            },
        }


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with taming's 32 groups and eps 1e-6 (fast channels-last backward: models.norm)."""
    return GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class Conv3x3(nn.Conv2d):
    """nn.Conv2d(in, out, 3, padding=1), same parameters; while ``winograd`` is set, a float32
    no-grad CPU call on at least 32x32 pixels runs as Winograd F(4x4, 3x3) (models.winograd)."""

    winograd = False  # set on instances by optim.speed.winograd_convolutions

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.winograd and winograd_helps(x, self):
            return winograd_conv3x3(x, self.weight, self.bias)
        return super().forward(x)


class ResnetBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, swish, conv3x3) x 2, 1x1 shortcut if widths differ."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _norm(in_channels)
        self.conv1 = Conv3x3(in_channels, out_channels)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv3x3(out_channels, out_channels)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv q/k/v/proj_out and a residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        b, c, h, w = x.shape
        hn = self.norm(x)

        def tokens(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, 1, c, h * w).transpose(2, 3)  # (B, 1, HW, C)

        out = F.scaled_dot_product_attention(tokens(self.q(hn)), tokens(self.k(hn)), tokens(self.v(hn)))
        out = out.transpose(2, 3).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve H and W: zero-pad right/bottom by one, then a stride-2 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H/2, W/2)
        return self.conv(F.pad(x, (0, 1, 0, 1)))


# Row (and column) taps of nearest-x2-then-3x3-conv as one stride-2 4x4 transposed conv: output
# row 2i takes x[i-1] * w[0] + x[i] * (w[1] + w[2]), row 2i+1 takes x[i] * (w[0] + w[1]) + x[i+1] * w[2],
# which conv_transpose2d (stride 2, padding 1) reads from taps 3, 1 and 2, 0.  (4, 3)
_UPSAMPLE_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def folded_upsample_weight(weight: torch.Tensor) -> torch.Tensor:
    """conv_transpose2d weight equal to nearest x2 followed by a 3x3 conv of ``weight``.

    (Cout, Cin, 3, 3) -> (Cin, Cout, 4, 4). Each output pixel then costs 4 taps instead of 9 on
    the upsampled image, with the same values up to float rounding (sums of weights). Summed in
    the weight's own dtype even under autocast, so a folded weight cached during a bf16 step
    still serves a float32 decode.
    """
    taps = torch.tensor(_UPSAMPLE_TAPS, dtype=weight.dtype, device=weight.device)  # (4, 3)
    with torch.autocast(weight.device.type, enabled=False):
        return torch.einsum("ak,oikl,bl->ioab", taps, weight, taps)  # (Cin, Cout, 4, 4)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour x2, then a 3x3 conv.

    Computed as one stride-2 transposed conv with the folded weight (:func:`folded_upsample_weight`,
    2.25x fewer multiply-adds); ``conv`` keeps taming's parameters. The folded weight is cached
    while ``conv.weight`` neither changes nor needs a gradient.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self._folded: tuple[tuple[Any, ...], torch.Tensor] | None = None

    @staticmethod
    def _key(w: torch.Tensor) -> tuple[Any, ...]:
        return (id(w), w.data_ptr(), w._version, w.dtype, w.device)

    def _weight(self) -> torch.Tensor:
        w = self.conv.weight
        if w.requires_grad and torch.is_grad_enabled():
            return folded_upsample_weight(w)
        if self._folded is None or self._folded[0] != self._key(w):
            with torch.no_grad():
                self._folded = (self._key(w), folded_upsample_weight(w))
        return self._folded[1]

    def fold_from(self, source: Upsample) -> None:
        """Cache the folded weight of ``source`` (same layer, e.g. in float32) for this module.

        For a copy converted to a lower precision: folding the float32 weight and then
        converting rounds once, instead of summing already rounded taps. The result takes this
        module's weight dtype and memory layout; it is used while that weight is unchanged.
        """
        w = self.conv.weight
        layout = torch.channels_last if w.dim() == 4 and not w.is_contiguous() else torch.contiguous_format
        with torch.no_grad():
            folded = folded_upsample_weight(source.conv.weight.detach().to(w.device))
        self._folded = (self._key(w), folded.to(w.dtype).contiguous(memory_format=layout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        if x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[-1] >= 32 and x.is_contiguous():
            # oneDNN's float32 transposed conv is 1.4-2x faster channels-last from 32x32 up
            # (256 channels, 64 -> 128: 34 vs 69 ms on 2 cores); below that NCHW is faster.
            x = x.contiguous(memory_format=torch.channels_last)
        return F.conv_transpose2d(x, self._weight(), self.conv.bias, stride=2, padding=1)

    def forward_unfolded(self, x: torch.Tensor) -> torch.Tensor:
        """taming's two-step computation (nearest x2, then the 3x3 conv), for comparison."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (AttnBlocks, maybe empty), resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()

    def blocks(self, h: torch.Tensor) -> torch.Tensor:
        """The level's ResnetBlocks (each followed by its AttnBlock, if any), without resampling."""
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        return h

    def resample(self, h: torch.Tensor) -> torch.Tensor:
        """The level's downsample or upsample, or ``h`` itself when it has neither."""
        for name in ("downsample", "upsample"):
            if name in self._modules:
                h = self._modules[name](h)
        return h

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.resample(self.blocks(h))


class _Middle(nn.Module):
    """Bottleneck: ResnetBlock, attention, ResnetBlock at the lowest resolution."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    """Image (B, in_channels, H, W) -> latent (B, z_channels, H/f, W/f), f = 2**(len(ch_mult)-1)."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        c = config
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)
        widths = [c.ch * m for m in (1, *c.ch_mult)]
        res = c.resolution
        self.down = nn.ModuleList()
        for i in range(len(c.ch_mult)):
            level, width = _Level(), widths[i]
            for _ in range(c.num_res_blocks):
                level.block.append(ResnetBlock(width, widths[i + 1], c.dropout))
                width = widths[i + 1]
                if res in c.attn_resolutions:
                    level.attn.append(AttnBlock(width))
            if i != len(c.ch_mult) - 1:
                level.downsample = Downsample(width)
                res //= 2
            self.down.append(level)
        self.mid = _Middle(widths[-1], c.dropout)
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 2 * c.z_channels if c.double_z else c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, ch, H, W)
        for level in self.down:
            h = level(h)
        h = self.mid(h)  # (B, ch*ch_mult[-1], H/f, W/f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, z_channels, H/f, W/f)


class Decoder(nn.Module):
    """Latent (B, z_channels, h, w) -> image (B, out_ch, h*f, w*f) in about [-1, 1].

    ``use_checkpointing``: when True and gradients are enabled, each up-level is recomputed in
    the backward pass (torch.utils.checkpoint, non-reentrant) to save activation memory.
    :meth:`forward_low` and :meth:`forward_high` split the forward after ``conv_in``, ``mid``
    and a number of the lowest-resolution up-levels, so the two parts can run at different
    precisions (``optim.stepper.decode_quantised``).
    """

    def __init__(self, config: VQGANConfig):
        super().__init__()
        c = config
        self.use_checkpointing = False
        n = len(c.ch_mult)
        width = c.ch * c.ch_mult[-1]
        res = c.resolution // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(c.z_channels, width, 3, padding=1)
        self.mid = _Middle(width, c.dropout)
        levels: list[_Level] = []
        for i in reversed(range(n)):
            level, out = _Level(), c.ch * c.ch_mult[i]
            for _ in range(c.num_res_blocks + 1):
                level.block.append(ResnetBlock(width, out, c.dropout))
                width = out
                if res in c.attn_resolutions:
                    level.attn.append(AttnBlock(width))
            if i != 0:
                level.upsample = Upsample(width)
                res *= 2
            levels.insert(0, level)  # up[0] is the full-resolution level, as in taming
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, c.out_ch, 3, padding=1)

    def _level(self, part: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """``part(h)`` for a level (or a level's blocks), recomputed in the backward when checkpointing."""
        if self.use_checkpointing and torch.is_grad_enabled():
            return checkpoint(part, h, use_reentrant=False)
        return part(h)

    def forward_low(self, z: torch.Tensor, levels: int, upsample: bool = True) -> torch.Tensor:
        """``conv_in``, ``mid`` and the ``levels`` lowest-resolution up-levels. (B, z_channels, h, w) -> features

        ``upsample=False`` stops before the last of those levels' upsampling, which
        :meth:`forward_high` with the same arguments then starts with.
        """
        h = self.mid(self.conv_in(z))  # (B, ch*ch_mult[-1], h, w)
        low = list(reversed(self.up))[:levels]
        for i, level in enumerate(low):
            h = self._level(level if upsample or i < len(low) - 1 else level.blocks, h)
        return h

    def forward_high(self, h: torch.Tensor, levels: int, upsample: bool = True) -> torch.Tensor:
        """The rest after :meth:`forward_low` with the same arguments: features -> (B, out_ch, H, W)"""
        if not upsample and levels > 0:
            # Returned in h's dtype: under autocast a float32 value (optim.stepper._decode_mixed)
            # then reaches the next level's first GroupNorm in float32, as it would without the
            # split. Normalised in bf16 instead, the step's gradient loses cosine to fp32's
            # (0.9904-0.9918 against 0.9911-0.9923, seeds 7-9, f16_16384 at 256x256).
            h = list(reversed(self.up))[levels - 1].resample(h).to(h.dtype)
        for level in list(reversed(self.up))[levels:]:
            h = self._level(level, h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_high(self.forward_low(z, 0), 0)  # (B, out_ch, h*f, w*f)


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantiser (taming's VectorQuantizer2); ``embedding.weight`` is (K, D)."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding.weight  # (K, D)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B, D, h, w)
        return vector_quantize(z, self.codebook)


class GumbelQuantizer(nn.Module):
    """Gumbel-softmax quantiser (taming's GumbelQuantize) evaluated with hard, noise-free argmax.

    ``proj`` maps z_channels to n_embed logits; ``embed.weight`` is the (K, D) codebook.
    """

    def __init__(self, in_channels: int, n_embed: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embed.weight  # (K, D)

    def codes(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, h, w)
        return self.proj(z).argmax(dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, D, h, w)
        return F.embedding(self.codes(z), self.codebook).movedim(3, 1)


class VQGAN(nn.Module):
    """Taming VQModel / GumbelVQ inference graph: encode, quantise, decode."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        if config.gumbel:
            self.quantize: nn.Module = GumbelQuantizer(config.z_channels, config.n_embed, config.embed_dim)
        else:
            self.quantize = VectorQuantizer(config.n_embed, config.embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        """The (n_embed, embed_dim) code vectors."""
        return self.quantize.codebook

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def n_embed(self) -> int:
        return self.config.n_embed

    @property
    def z_channels(self) -> int:
        return self.config.z_channels

    @property
    def factor(self) -> int:
        return self.config.factor

    @property
    def is_gumbel(self) -> bool:
        return self.config.gumbel

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Quantised latent of images in [-1, 1]: (B, 3, H, W) -> (B, embed_dim, H/f, W/f)."""
        h = self.quant_conv(self.encoder(x))  # (B, embed_dim, H/f, W/f)
        return self.quantize(h)

    def quantize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code per position with a straight-through gradient (VQGAN-CLIP's vector_quantize)."""
        return vector_quantize(z, self.codebook)

    def embed_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Latent made of the given code indices: (B, h, w) -> (B, embed_dim, h, w)."""
        return F.embedding(indices, self.codebook).movedim(3, 1)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Raw decoder output, about [-1, 1]: (B, embed_dim, h, w) -> (B, 3, h*f, w*f)."""
        return self.decoder(self.post_quant_conv(z_q))

    def decode_low(self, z_q: torch.Tensor, levels: int, upsample: bool = True) -> torch.Tensor:
        """:meth:`decode` up to the end of the ``levels`` lowest-resolution up-levels (Decoder.forward_low;
        ``upsample=False``: before the last one's upsampling)."""
        return self.decoder.forward_low(self.post_quant_conv(z_q), levels, upsample)

    def decode_high(self, h: torch.Tensor, levels: int, upsample: bool = True) -> torch.Tensor:
        """The rest of :meth:`decode` after :meth:`decode_low` with the same arguments."""
        return self.decoder.forward_high(h, levels, upsample)

    def decode_image(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decoded image mapped to [0, 1] with a plain clamp: (B, 3, h*f, w*f)."""
        return self.decode(z_q).add(1).div(2).clamp(0, 1)
