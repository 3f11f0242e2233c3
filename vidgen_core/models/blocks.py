"""3D-convolution building blocks shared by the VAE and the latent GAN generator.

Every block takes and returns a video feature map of shape (B, C, T, H, W).
Only blocks that both models use live here; the discriminators' layers stay in
``gan.py`` and ``patch_disc.py``.

``causal=True`` pads time on the past side only, so output frame ``t`` depends
on input frames ``<= t``: the first frame is encoded like an image and clips of
any length stream through the same weights (MAGVIT-v2, CogVideoX style).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame: (B, C, T, H, W) normalised over (C/G, H, W) for each t.

    Clip-wide statistics would let a future frame shift every output, so causal
    models normalise each frame on its own. Same parameters (and state-dict keys)
    as ``nn.GroupNorm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)


def norm_layer(channels: int, kind: str = "group", per_frame: bool = False) -> nn.Module:
    """``kind="group"``: :func:`group_norm`; ``"none"``: identity.

    The VAE defaults to no normalisation: GroupNorm over a narrow stage mixes a
    clip's colour channels into shared statistics and then removes them, which
    is exactly the per-channel information (colour, brightness) a codec must
    carry. Residual branches are then zero-initialised to keep training stable.
    """
    if kind == "group":
        return group_norm(channels, per_frame)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}', expected 'group' or 'none'")


def group_norm(channels: int, per_frame: bool = False, affine: bool = True) -> nn.GroupNorm:
    """GroupNorm with at most 8 groups that divide ``channels`` (per frame for causal models).

    The models here are narrow (16–64 channels); diffusers' 32 groups would leave
    one or two channels per group, which behaves like instance norm and trains
    worse at this width.
    """
    cls = FrameGroupNorm if per_frame else nn.GroupNorm
    return cls(num_groups=math.gcd(channels, 8), num_channels=channels, eps=1e-6, affine=affine)


class CausalConv3d(nn.Module):
    """Conv3d whose temporal receptive field looks only backwards: (B, C, T, H, W) -> (B, C', T/st, H/ss, W/ss).

    Time is padded with ``k - 1`` copies of the first frame in front (replicate,
    not zeros: a zero frame would read as a black cut); space keeps the usual
    symmetric zero padding. The wrapped conv is ``self.conv`` so its state-dict
    keys read ``...conv.weight``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.time_pad = kernel_size - 1
        pad = kernel_size // 2
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=(0, pad, pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1), x], dim=2)
        return self.conv(x)


def conv3d(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: tuple[int, int, int] = (1, 1, 1),
    causal: bool = False,
) -> nn.Module:
    """A 3D convolution with "same" padding for odd kernels (before striding); causal in time if asked."""
    if causal and kernel_size > 1:
        return CausalConv3d(in_channels, out_channels, kernel_size, stride)
    return nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


class ResnetBlock3D(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, Conv3d) × 2 plus a skip.

    Shapes: (B, C_in, T, H, W) -> (B, C_out, T, H, W). A 1×1×1 conv projects the
    skip path when the channel count changes. A causal block also normalises
    per frame (:class:`FrameGroupNorm`). ``norm="none"`` drops both norms and
    zero-initialises the last conv, so each block starts as its skip path.
    """

    def __init__(self, in_channels: int, out_channels: int, causal: bool = False, norm: str = "group") -> None:
        super().__init__()
        self.norm1 = norm_layer(in_channels, norm, per_frame=causal)
        self.conv1 = conv3d(in_channels, out_channels, causal=causal)
        self.norm2 = norm_layer(out_channels, norm, per_frame=causal)
        self.conv2 = conv3d(out_channels, out_channels, causal=causal)
        self.skip = conv3d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        if norm == "none":
            last = self.conv2.conv if isinstance(self.conv2, CausalConv3d) else self.conv2
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C_in, T, H, W) -> (B, C_out, T, H, W). ``cond`` (B, D): the input of conditional
        norms (a subclass swaps norm1/norm2 for ones called as ``norm(x, cond)``); None for plain ones."""
        h = self.conv1(F.silu(self.norm1(x) if cond is None else self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h) if cond is None else self.norm2(h, cond)))
        return self.skip(x) + h


class Downsample3D(nn.Module):
    """Strided 3×3×3 conv: (B, C, T, H, W) -> (B, C, T/st, H/ss, W/ss).

    A learned strided conv (rather than pooling) lets the encoder choose what to
    keep; ``st``/``ss`` are 1 or 2 so temporal and spatial factors can differ.
    """

    def __init__(self, channels: int, temporal: bool, spatial: bool, causal: bool = False) -> None:
        super().__init__()
        self.stride = (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1)
        self.conv = conv3d(channels, channels, stride=self.stride, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample3D(nn.Module):
    """Nearest-neighbour upsampling then a 3×3×3 conv: (B, C, T, H, W) -> (B, C, T·st, H·ss, W·ss).

    Nearest + conv avoids the checkerboard artefacts of transposed convolutions.
    """

    def __init__(self, channels: int, temporal: bool, spatial: bool, causal: bool = False) -> None:
        super().__init__()
        self.scale = (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1)
        self.conv = conv3d(channels, channels, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.conv(x)


def space_to_depth(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C·p·p, T, H/p, W/p): each p×p pixel patch becomes channels.

    Lets a model read full-resolution detail while its first convolution runs
    on a p² times smaller grid (the cheap way to full resolution on a CPU).
    """
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * p * p, t, h // p, w // p)


def depth_to_space(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C·p·p, T, H, W) -> (B, C, T, H·p, W·p): the inverse of :func:`space_to_depth`."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    x = x.reshape(b, c, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(b, c, t, h * p, w * p)
