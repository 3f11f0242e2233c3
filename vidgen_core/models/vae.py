"""A small 3D-convolution KL VAE for video clips (diffusers ``AutoencoderKL`` in 3D).

    x (B, 3, T, H, W) in [-1, 1]
      -> Encoder -> DiagonalGaussian over z (B, Cz, T/t, H/s, W/s)
      -> Decoder -> recon (B, 3, T, H, W)

``t`` and ``s`` are ``VAEConfig.temporal_downsample`` / ``spatial_downsample``
(powers of 2). The encoder has ``log2(max(t, s))`` down stages; stage ``i`` halves
time only while ``i < log2(t)`` and space only while ``i < log2(s)``, so a
temporal factor smaller than the spatial one compresses time early, at full
resolution, where it saves the most compute. The decoder mirrors it.
Each stage has ``num_res_blocks`` residual blocks; ``causal=True`` makes every
conv look only backwards in time and every norm per-frame, so reconstructed
frame ``t`` depends only on input frames ``<= t``.

This file imports torch/numpy only; the config is any object with VAEConfig's
attributes (``vidgen_core.config.VAEConfig`` or a namespace rebuilt from JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidgen_core.models.blocks import (
    Downsample3D, ResnetBlock3D, Upsample3D, conv3d, depth_to_space, norm_layer, space_to_depth,
)
from vidgen_core.models.colour import ColourBasis

if TYPE_CHECKING:
    from vidgen_core.config import VAEConfig

# exp(20) is already huge and exp(-30) underflows float16: beyond these the KL and
# the sample are numerically meaningless, so the encoder's logvar is clamped.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


@dataclass
class DiagonalGaussian:
    """A diagonal Gaussian posterior q(z | x); ``mean`` and ``logvar`` are (B, Cz, T', H', W')."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def __post_init__(self) -> None:
        self.logvar = self.logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample ``mean + std * eps`` (B, Cz, T', H', W'); differentiable."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, averaged over latent elements: (B,).

        Averaging (not summing) over elements keeps ``kl_weight`` independent of the
        latent size, matching the per-pixel mean of the L1 reconstruction term.
        """
        kl = 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)
        return kl.flatten(1).mean(dim=1)


@dataclass
class VAEOutput:
    """``recon`` (B, 3, T, H, W) and the ``posterior`` it was decoded from."""

    recon: torch.Tensor
    posterior: DiagonalGaussian


def _log2_exact(value: int, name: str) -> int:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of 2, got {value}")
    return value.bit_length() - 1


def _stage_channels(cfg: VAEConfig, num_stages: int) -> list[int]:
    # Stage i uses channel_mult[i]; a shorter list repeats its last entry.
    mult = list(cfg.channel_mult)
    return [cfg.base_channels * mult[min(i, len(mult) - 1)] for i in range(num_stages)]


def _options(cfg: VAEConfig) -> tuple[bool, int, str]:
    return bool(cfg.causal), int(cfg.num_res_blocks), str(cfg.norm)


def _patch(cfg: VAEConfig) -> tuple[int, int]:
    """(patch size p, spatial halvings left to the convs after the p×p space-to-depth)."""
    p = int(cfg.patch_size)
    n_p = _log2_exact(p, "patch_size")
    n_s = _log2_exact(cfg.spatial_downsample, "spatial_downsample")
    if n_p > n_s:
        raise ValueError(f"patch_size {p} exceeds spatial_downsample {cfg.spatial_downsample}")
    return p, n_s - n_p


def _res_blocks(in_channels: int, out_channels: int, n: int, causal: bool, norm: str) -> list[nn.Module]:
    return [ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, causal, norm) for i in range(n)]


class Encoder(nn.Module):
    """(B, 3, T, H, W) -> (B, 2·Cz, T/t, H/s, W/s): mean and log-variance stacked on channels."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        n_t = _log2_exact(cfg.temporal_downsample, "temporal_downsample")
        self.patch, n_s = _patch(cfg)
        n_down = max(n_t, n_s)
        chans = _stage_channels(cfg, max(n_down, 1))
        mid = cfg.base_channels * cfg.channel_mult[-1]
        causal, n_res, norm = _options(cfg)

        self.conv_in = conv3d(3 * self.patch**2, chans[0], causal=causal)
        stages: list[nn.Module] = []
        prev = chans[0]
        for i in range(n_down):
            down = Downsample3D(chans[i], i < n_t, i < n_s, causal)
            stages.append(nn.Sequential(*_res_blocks(prev, chans[i], n_res, causal, norm), down))
            prev = chans[i]
        self.down = nn.Sequential(*stages)
        self.mid = ResnetBlock3D(prev, mid, causal, norm)
        self.norm_out = norm_layer(mid, norm, per_frame=causal)
        self.conv_out = conv3d(mid, 2 * cfg.latent_channels, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(space_to_depth(x, self.patch))))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, Cz, T/t, H/s, W/s) -> (B, 3, T, H, W); unbounded output (targets lie in [-1, 1])."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        n_t = _log2_exact(cfg.temporal_downsample, "temporal_downsample")
        self.patch, n_s = _patch(cfg)
        n_down = max(n_t, n_s)
        chans = _stage_channels(cfg, max(n_down, 1))
        mid = cfg.base_channels * cfg.channel_mult[-1]
        causal, n_res, norm = _options(cfg)

        self.conv_in = conv3d(cfg.latent_channels, mid, causal=causal)
        self.mid = ResnetBlock3D(mid, mid, causal, norm)
        stages: list[nn.Module] = []
        prev = mid
        for i in reversed(range(n_down)):  # mirror of the encoder: deepest stage first
            up = Upsample3D(chans[i], i < n_t, i < n_s, causal)
            stages.append(nn.Sequential(*_res_blocks(prev, chans[i], n_res, causal, norm), up))
            prev = chans[i]
        self.up = nn.Sequential(*stages)
        self.norm_out = norm_layer(prev, norm, per_frame=causal)
        self.conv_out = conv3d(prev, 3 * self.patch**2, causal=causal)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return depth_to_space(self.conv_out(F.silu(self.norm_out(h))), self.patch)


class VideoVAE(nn.Module):
    """3D-conv KL VAE over RGB clips (B, 3, T, H, W) in [-1, 1].

    The encoder reads, and the decoder writes, the brightness/colour basis of
    :class:`~vidgen_core.models.colour.ColourBasis` (``colour_weight``); the
    conversion happens inside :meth:`encode` and :meth:`decode`, so callers see
    RGB only. :meth:`to_loss_space` maps RGB into that basis for the loss.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.colour = ColourBasis(cfg.colour_weight)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def to_loss_space(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB (B, 3, ...) -> the brightness/colour basis the encoder reads and the loss is measured in."""
        return self.colour(rgb)

    def latent_shape(self, clip_len: int, size: int) -> tuple[int, int, int, int]:
        """(Cz, T', H', W') of the latent of a clip of ``clip_len`` frames of ``size``×``size``."""
        return self.latent_dims(clip_len, size, size)

    def latent_dims(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(Cz, T/t, H/s, W/s) of the latent of a (T, H, W) clip; error if it does not divide."""
        t, s = self.cfg.temporal_downsample, self.cfg.spatial_downsample
        if frames % t or height % s or width % s:
            raise ValueError(
                f"clip of {frames} frames of {height}x{width} does not divide by the VAE's "
                f"downsampling (temporal {t}, spatial {s})"
            )
        return (self.cfg.latent_channels, frames // t, height // s, width // s)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """x (B, 3, T, H, W) -> posterior over z, each of (B, Cz, T/t, H/s, W/s)."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected video (B, 3, T, H, W), got shape {tuple(x.shape)}")
        t, s = self.cfg.temporal_downsample, self.cfg.spatial_downsample
        if x.shape[2] % t or x.shape[3] % s or x.shape[4] % s:
            raise ValueError(f"video shape {tuple(x.shape[2:])} (T, H, W) must divide by ({t}, {s}, {s})")
        mean, logvar = self.encoder(self.to_loss_space(x)).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, Cz, T', H', W') -> RGB recon (B, 3, T'·t, H'·s, W'·s)."""
        out = self.decoder(z)
        return self.colour.inverse(out)

    def forward(self, x: torch.Tensor, sample: bool = True, noise: torch.Tensor | None = None) -> VAEOutput:
        """x (B, 3, T, H, W) -> VAEOutput; ``sample=False`` decodes the posterior mean.

        ``noise`` (B, Cz, T', H', W') standard normal replaces the drawn ``eps`` of
        the sample: training passes noise that depends on the sample's place in
        the global batch, not on the rank that holds it.
        """
        posterior = self.encode(x)
        if not sample:
            z = posterior.mode()
        elif noise is not None:
            z = posterior.mean + posterior.std * noise.to(posterior.mean.dtype)
        else:
            z = posterior.sample()
        return VAEOutput(recon=self.decode(z), posterior=posterior)


def frames_to_video(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) -> float video (B, 3, T, H, W) in [-1, 1] on ``device``.

    The uint8 batch is moved first and converted on the device: 4× less to copy.
    """
    t = torch.as_tensor(frames)
    if t.dtype != torch.uint8 or t.dim() != 5 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 clips (B, T, H, W, 3), got {t.dtype} {tuple(t.shape)}")
    t = t.to(device, non_blocking=True)
    return t.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)


def video_to_frames(video: torch.Tensor) -> np.ndarray:
    """float video (B, 3, T, H, W), nominally in [-1, 1] -> uint8 clips (B, T, H, W, 3), clipped."""
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"expected video (B, 3, T, H, W), got shape {tuple(video.shape)}")
    v = ((video.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return v.to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()
