"""Patch discriminator on clips, for the VAE's optional adversarial term.

    clips (B, 3, T, H, W) in [-1, 1] -> logits (B, 1, ceil(T/2), H/8, W/8)

One logit per space-time patch (PatchGAN, Isola et al. 2017, as in the taming /
SD VAEs): it judges local texture and motion, which an L1/L2 loss blurs, and
leaves global structure to the reconstruction term. Spectral norm keeps it
Lipschitz so hinge training stays stable without a gradient penalty. Imports
torch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator3D(nn.Module):
    """clips (B, 3, T, H, W) -> per-patch logits (B, 1, T', H', W').

    Three strided 4×4 (space) convs halve H and W each; the middle one also
    halves T (rounding up), so a patch spans a few frames.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.conv1 = spectral_norm(nn.Conv3d(3, c, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)))
        self.conv2 = spectral_norm(nn.Conv3d(c, 2 * c, (3, 4, 4), stride=(2, 2, 2), padding=(1, 1, 1)))
        self.conv3 = spectral_norm(nn.Conv3d(2 * c, 4 * c, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)))
        self.head = spectral_norm(nn.Conv3d(4 * c, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, T, H, W) with H, W divisible by 8 -> logits (B, 1, ceil(T/2), H/8, W/8)."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected clips (B, 3, T, H, W), got shape {tuple(x.shape)}")
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(h), 0.2)
        h = F.leaky_relu(self.conv3(h), 0.2)
        return self.head(h)
