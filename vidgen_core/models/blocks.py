"""3D-convolution building blocks shared by the VAE and the latent GAN generator.

Every block takes and returns a video feature map of shape (B, C, T, H, W).
Only blocks that both models use live here; the discriminator's spectral-norm
layers stay in ``gan.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with at most 8 groups that divide ``channels``.

    The models here are narrow (16–64 channels); diffusers' 32 groups would leave
    one or two channels per group, which behaves like instance norm and trains
    worse at this width.
    """
    return nn.GroupNorm(num_groups=math.gcd(channels, 8), num_channels=channels, eps=1e-6)


def conv3d(in_channels: int, out_channels: int, kernel_size: int = 3, stride: tuple[int, int, int] = (1, 1, 1)) -> nn.Conv3d:
    """A 3D convolution with "same" padding for odd kernels (before striding)."""
    return nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


class ResnetBlock3D(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, Conv3d) × 2 plus a skip.

    Shapes: (B, C_in, T, H, W) -> (B, C_out, T, H, W). A 1×1×1 conv projects the
    skip path when the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3d(in_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.conv2 = conv3d(out_channels, out_channels)
        self.skip = conv3d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample3D(nn.Module):
    """Strided 3×3×3 conv: (B, C, T, H, W) -> (B, C, T/st, H/ss, W/ss).

    A learned strided conv (rather than pooling) lets the encoder choose what to
    keep; ``st``/``ss`` are 1 or 2 so temporal and spatial factors can differ.
    """

    def __init__(self, channels: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.stride = (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1)
        self.conv = conv3d(channels, channels, stride=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample3D(nn.Module):
    """Nearest-neighbour upsampling then a 3×3×3 conv: (B, C, T, H, W) -> (B, C, T·st, H·ss, W·ss).

    Nearest + conv avoids the checkerboard artefacts of transposed convolutions.
    """

    def __init__(self, channels: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.scale = (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1)
        self.conv = conv3d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.conv(x)
