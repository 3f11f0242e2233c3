"""Video GANs: a generator of VAE latents (default) or of pixels, and a discriminator.

Latent space (``GANConfig.space = "latent"``): the GAN never sees pixels. Real
samples are the frozen VAE encoder's posterior means, multiplied by
``latent_scale`` (1 / their std, measured once per run) so the generator
targets roughly unit-variance latents; to decode a generated latent, divide by
``latent_scale`` and call ``VideoVAE.decode`` (:meth:`LatentGenerator.vae_latents`
does the division). Pixel space (``"pixel"``): :class:`PixelGenerator` emits
clips in [-1, 1] directly and the discriminator reads clips.

Shapes: noise (B, noise_dim), labels (B,) int64, samples (B, C, T', H', W') with
``latent_shape = (C, T', H', W')`` (for pixels C = 3 and T', H', W' are the
clip's own). Every generator has ``space``, ``noise_dim``, ``conditional``,
``num_classes`` and ``latent_shape``. Imports torch only; the config is any
object with GANConfig's attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from vidgen_core.models.blocks import ResnetBlock3D, Upsample3D, conv3d, group_norm

if TYPE_CHECKING:
    from vidgen_core.config import GANConfig


def _can_halve(h: int, w: int) -> bool:
    # Halve the spatial grid only where it stays at least 2×2 and divides evenly.
    return h % 2 == 0 and w % 2 == 0 and min(h, w) >= 4


def _check_latent_shape(latent_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(latent_shape) != 4 or min(latent_shape) < 1:
        raise ValueError(f"latent_shape must be (C, T, H, W) of positive ints, got {latent_shape}")
    c, t, h, w = (int(v) for v in latent_shape)
    return c, t, h, w


def _maybe_spectral_norm(cfg: GANConfig) -> Callable[[nn.Module], nn.Module]:
    return spectral_norm if cfg.spectral_norm else (lambda module: module)


def _label_input(noise: torch.Tensor, labels: torch.Tensor | None, embed: nn.Module | None, noise_dim: int) -> torch.Tensor:
    if noise.dim() != 2 or noise.shape[1] != noise_dim:
        raise ValueError(f"expected noise (B, {noise_dim}), got shape {tuple(noise.shape)}")
    if embed is None:
        return noise
    if labels is None:
        raise ValueError("this generator is class-conditional: pass labels (B,) in [0, num_classes)")
    return torch.cat([noise, embed(labels)], dim=1)


def append_minibatch_std(h: torch.Tensor, group: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C + 1, T, H, W): the extra channel holds, for each group of ``group``
    consecutive samples, the std across the group averaged over features and positions.

    Consecutive groups keep the real and the fake half of a discriminator batch apart
    (``cat([real, fake])`` with ``group`` dividing each half). Samples that repeat each
    other give a small value, which the discriminator learns to call fake.
    """
    b = h.shape[0]
    if b % group:
        raise ValueError(f"minibatch std: a batch of {b} does not split into groups of {group}")
    grouped = h.float().reshape(b // group, group, *h.shape[1:])
    std = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3, 4))  # (B / group,)
    channel = std.repeat_interleave(group).to(h.dtype).view(b, 1, 1, 1, 1).expand(b, 1, *h.shape[2:])
    return torch.cat([h, channel], dim=1)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without its own affine, then ``x · (1 + γ(cond)) + β(cond)`` per sample and channel.

    x (B, C, T, H, W), cond (B, cond_dim) -> (B, C, T, H, W). γ and β start at zero, so a new
    layer is a plain GroupNorm; training lets the generator's input (noise + class) restore the
    per-sample statistics the normalisation removes (BigGAN's conditional norm, AdaGN).
    """

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, affine=False)  # no affine of its own: it comes from cond
        self.affine = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(cond).to(x.dtype)[:, :, None, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


class AdaptiveResBlock3D(ResnetBlock3D):
    """:class:`~vidgen_core.models.blocks.ResnetBlock3D` with :class:`AdaptiveGroupNorm` in place of
    its two GroupNorms: (B, C_in, T, H, W), cond (B, cond_dim) -> (B, C_out, T, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int) -> None:
        super().__init__(in_channels, out_channels)
        self.norm1 = AdaptiveGroupNorm(in_channels, cond_dim)
        self.norm2 = AdaptiveGroupNorm(out_channels, cond_dim)


class LatentGenerator(nn.Module):
    """noise (B, noise_dim) [+ labels (B,)] -> latents (B, C, T', H', W') in the scaled latent space.

    A linear layer maps the input to a coarse grid (half the latent's spatial size
    where possible), then residual 3D-conv blocks refine and upsample it.
    Class conditioning concatenates a learned label embedding to the noise.
    """

    space = "latent"

    def __init__(self, cfg: GANConfig, latent_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        c, t, h, w = _check_latent_shape(latent_shape)
        self.latent_shape = (c, t, h, w)
        self.noise_dim = cfg.noise_dim
        self.num_classes = num_classes
        self.conditional = bool(cfg.conditional) and num_classes > 0
        # Multiply VAE latents by this to reach the generator's space. A buffer, so it
        # travels with the weights (checkpoints, safetensors) and DDP keeps it in sync.
        self.register_buffer("latent_scale", torch.ones(()))

        # getattr: generators saved before the setting existed were base_channels wide.
        width = getattr(cfg, "generator_channels", None) or cfg.base_channels
        ch = 2 * width
        self.upsample = _can_halve(h, w)
        self.grid = (t, h // 2, w // 2) if self.upsample else (t, h, w)
        in_dim = cfg.noise_dim * (2 if self.conditional else 1)
        self.embed = nn.Embedding(num_classes, cfg.noise_dim) if self.conditional else None
        self.fc = nn.Linear(in_dim, ch * self.grid[0] * self.grid[1] * self.grid[2])
        self.adaptive = getattr(cfg, "generator_norm", "group") == "adaptive"
        # Built in this order whatever the norm: the order fixes which random numbers each layer's
        # initial weights get, so a seed gives the same generator it gave before the option existed.
        self.block1 = AdaptiveResBlock3D(ch, ch, in_dim) if self.adaptive else ResnetBlock3D(ch, ch)
        self.up = Upsample3D(ch, temporal=False, spatial=True) if self.upsample else nn.Identity()
        if self.adaptive:
            self.block2 = AdaptiveResBlock3D(ch, width, in_dim)
            self.norm_out = AdaptiveGroupNorm(width, in_dim)
        else:
            self.block2 = ResnetBlock3D(ch, width)
            self.norm_out = group_norm(width)
        self.conv_out = conv3d(width, c)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """noise (B, noise_dim), labels (B,) or None -> latents (B, C, T', H', W') (scaled space)."""
        cond = _label_input(noise, labels, self.embed, self.noise_dim)
        h = self.fc(cond).view(noise.shape[0], -1, *self.grid)
        if self.adaptive:
            h = self.block2(self.up(self.block1(h, cond)), cond)
            return self.conv_out(F.silu(self.norm_out(h, cond)))
        h = self.block2(self.up(self.block1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))

    @torch.no_grad()
    def vae_latents(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Generated latents in the VAE's own scale, ready for ``VideoVAE.decode``: (B, C, T', H', W')."""
        return self(noise, labels) / self.latent_scale


class PixelGenerator(nn.Module):
    """noise (B, noise_dim) [+ labels (B,)] -> clips (B, 3, T, H, W) in [-1, 1].

    The pixel-space counterpart of :class:`LatentGenerator`: a linear layer to a
    coarse grid (up to 8× smaller in space), then one residual block and a 2×
    spatial upsample per halving, channels shrinking from 4·base to base, and a
    tanh so samples lie where real clips do.
    """

    space = "pixel"
    MAX_HALVINGS = 3

    def __init__(self, cfg: GANConfig, video_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        c, t, h, w = _check_latent_shape(video_shape)
        self.latent_shape = (c, t, h, w)  # what the generator emits (here: pixels)
        self.noise_dim = cfg.noise_dim
        self.num_classes = num_classes
        self.conditional = bool(cfg.conditional) and num_classes > 0
        self.register_buffer("latent_scale", torch.ones(()))  # pixels are not rescaled; kept for a uniform API
        halvings = 0
        while halvings < self.MAX_HALVINGS and _can_halve(h >> halvings, w >> halvings):
            halvings += 1
        self.grid = (t, h >> halvings, w >> halvings)
        chans = [cfg.base_channels * max(1, 4 >> i) for i in range(halvings + 1)]
        self.embed = nn.Embedding(num_classes, cfg.noise_dim) if self.conditional else None
        in_dim = cfg.noise_dim * (2 if self.conditional else 1)
        self.fc = nn.Linear(in_dim, chans[0] * self.grid[0] * self.grid[1] * self.grid[2])
        self.up = nn.Sequential(
            *(nn.Sequential(ResnetBlock3D(chans[i], chans[i + 1]), Upsample3D(chans[i + 1], False, True)) for i in range(halvings))
        )
        self.block = ResnetBlock3D(chans[-1], chans[-1])
        self.norm_out = group_norm(chans[-1])
        self.conv_out = conv3d(chans[-1], c)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """noise (B, noise_dim), labels (B,) or None -> clips (B, 3, T, H, W) in [-1, 1]."""
        h = _label_input(noise, labels, self.embed, self.noise_dim)
        h = self.fc(h).view(noise.shape[0], -1, *self.grid)
        h = self.block(self.up(h))
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))


class LatentDiscriminator(nn.Module):
    """samples (B, C, T', H', W') [+ labels (B,)] -> logits (B,); latents or pixel clips.

    Spectral norm on every layer (``GANConfig.spectral_norm``, default on)
    bounds the discriminator's Lipschitz constant, the standard stabiliser for
    hinge-loss GANs; R1 (``r1_gamma``) is the alternative. With ``minibatch_std`` > 0 the last
    conv also reads :func:`append_minibatch_std`'s channel. Inputs larger than
    ``grid`` (16×16 by default; pixel clips) are first halved in space by strided convs. Class
    conditioning is the projection discriminator (Miyato & Koyama 2018):
    logit += <embed(y), features>. With ``GANConfig.class_loss > 0`` it also has
    an auxiliary class head (AC-GAN, Odena et al. 2017), read with
    ``forward(..., with_class=True)``; :mod:`vidgen_core.train.gan_steps` trains it
    on real samples only.
    """

    def __init__(
        self, cfg: GANConfig, latent_shape: tuple[int, ...], num_classes: int, grid: int = 16, channels: int | None = None
    ) -> None:
        """``grid``: inputs are halved in space until at most this wide before ``conv2``/``conv3``;
        ``channels``: base width (None = ``cfg.base_channels``). The pixel D sets both
        (``GANConfig.pixel_d_grid``, ``pixel_d_channels``)."""
        super().__init__()
        c, _, h, w = _check_latent_shape(latent_shape)
        self.latent_shape = _check_latent_shape(latent_shape)
        self.num_classes = num_classes
        self.conditional = bool(cfg.conditional) and num_classes > 0
        sn = _maybe_spectral_norm(cfg)
        ch = channels or cfg.base_channels
        self.conv1 = sn(conv3d(c, ch))
        # Extra halvings down to the grid (none for typical latents: no new weights).
        pre: list[nn.Module] = []
        while min(h, w) > grid and _can_halve(h, w):
            pre += [sn(conv3d(ch, ch, stride=(1, 2, 2))), nn.LeakyReLU(0.2)]
            h, w = h // 2, w // 2
        self.pre = nn.Sequential(*pre)
        stride = (1, 2, 2) if _can_halve(h, w) else (1, 1, 1)
        self.conv2 = sn(conv3d(ch, 2 * ch, stride=stride))
        self.minibatch_std = cfg.minibatch_std
        self.conv3 = sn(conv3d(2 * ch + (1 if self.minibatch_std else 0), 2 * ch))
        self.linear = sn(nn.Linear(2 * ch, 1))
        self.embed = sn(nn.Embedding(num_classes, 2 * ch)) if self.conditional else None
        has_head = self.conditional and cfg.class_loss > 0
        self.class_head = nn.Linear(2 * ch, num_classes) if has_head else None

    def forward(
        self, latents: torch.Tensor, labels: torch.Tensor | None = None, with_class: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """latents (B, C, T', H', W'), labels (B,) or None -> logits (B,).

        ``with_class=True`` (needs the class head) -> (logits (B,), class logits (B, num_classes)):
        one forward for both, as DDP requires.
        """
        if latents.dim() != 5 or tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected latents (B, {', '.join(map(str, self.latent_shape))}), got {tuple(latents.shape)}")
        h = self.pre(F.leaky_relu(self.conv1(latents), 0.2))
        h = F.leaky_relu(self.conv2(h), 0.2)
        if self.minibatch_std:
            h = append_minibatch_std(h, self.minibatch_std)
        h = F.leaky_relu(self.conv3(h), 0.2)
        # Sum-pool (not mean) as in SNGAN/BigGAN: more evidence -> larger logits.
        feat = h.sum(dim=(2, 3, 4))  # (B, 2·ch)
        logits = self.linear(feat).squeeze(1)
        if self.conditional:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels (B,) in [0, num_classes)")
            logits = logits + (self.embed(labels) * feat).sum(dim=1)
        if with_class:
            if self.class_head is None:
                raise ValueError("this discriminator has no class head: set gan.class_loss > 0 for a conditional GAN")
            return logits, self.class_head(feat)
        return logits


def build_pixel_discriminator(cfg: GANConfig, pixel_shape: tuple[int, ...], num_classes: int) -> LatentDiscriminator:
    """The latent GAN's pixel D over decoded frames (3, T_px, H, W): its reach and width come from
    ``gan.pixel_d_grid`` and ``gan.pixel_d_channels``."""
    return LatentDiscriminator(cfg, pixel_shape, num_classes, grid=cfg.pixel_d_grid, channels=cfg.pixel_d_channels)


class LatentAndPixelDiscriminator(nn.Module):
    """Two discriminators of a latent GAN trained as one module: ``latent`` reads latents
    (B, C, T', H', W'), ``pixel`` reads what the frozen VAE decodes from a few of them
    (b, 3, T_px, H, W): one latent time slice, so T_px is the VAE's temporal factor.

    Why a pixel D: a shape's class is hard to read from the latents of videos not seen in
    training (a latent classifier reached 0.41-0.45 on test clips, a pixel one 0.88), so a
    latent D alone cannot teach G what a square looks like (bench/RESULTS.md).

    One forward serves both (DDP allows one forward per backward): ``forward(latents, labels,
    with_class, pixels, pixel_labels)`` returns the latent D's output, or with ``pixels`` the
    pair (latent D's output, pixel D's output); each output is logits (B,) or, with
    ``with_class``, (logits, class logits).
    """

    def __init__(self, cfg: GANConfig, latent_shape: tuple[int, ...], pixel_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.latent = LatentDiscriminator(cfg, latent_shape, num_classes)
        self.pixel = build_pixel_discriminator(cfg, pixel_shape, num_classes)
        self.latent_shape = self.latent.latent_shape
        self.pixel_shape = self.pixel.latent_shape
        self.conditional = self.latent.conditional

    def forward(
        self,
        latents: torch.Tensor,
        labels: torch.Tensor | None = None,
        with_class: bool = False,
        pixels: torch.Tensor | None = None,
        pixel_labels: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple:
        out = self.latent(latents, labels, with_class=with_class)
        if pixels is None:
            return out
        return out, self.pixel(pixels, pixel_labels, with_class=with_class)


def build_discriminator(
    cfg: GANConfig, shape: tuple[int, ...], num_classes: int, pixel_shape: tuple[int, ...] | None = None
) -> nn.Module:
    """The GAN's discriminator: a :class:`LatentDiscriminator` over ``shape`` (latents or, for a
    pixel GAN, clips), paired with a pixel D over ``pixel_shape`` when that is given (latent GAN
    with ``cfg.pixel_d_weight > 0``)."""
    if pixel_shape is None:
        return LatentDiscriminator(cfg, shape, num_classes)
    return LatentAndPixelDiscriminator(cfg, shape, pixel_shape, num_classes)


def build_generator(cfg: GANConfig, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The generator for ``cfg.space``: latents of ``shape`` (latent) or clips of ``shape`` (pixel)."""
    space = cfg.space
    if space == "latent":
        return LatentGenerator(cfg, shape, num_classes)
    if space == "pixel":
        return PixelGenerator(cfg, shape, num_classes)
    raise ValueError(f"unknown GAN space '{space}', expected 'latent' or 'pixel'")
