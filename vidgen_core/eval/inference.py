"""Batched inference: uint8 numpy clips in, uint8 numpy clips out.

Shared by evaluation and the registry's pyfunc models so that what is scored
is exactly what a user of ``models:/vidgen-vae@candidate`` gets back.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vidgen_core.models.vae import frames_to_video, video_to_frames


def default_device() -> torch.device:
    """CUDA when this process can see a GPU, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def module_device(module: nn.Module) -> torch.device:
    """Device of a module's first parameter (CPU for a parameter-free module)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@torch.no_grad()
def reconstruct(vae: nn.Module, frames: np.ndarray, batch_size: int) -> np.ndarray:
    """Encode and decode clips with the posterior mean (no sampling noise).

    Args:
        vae: a VideoVAE-like module: ``forward(x, sample=False).recon`` with
            ``x`` float ``(B, 3, T, H, W)`` in [-1, 1]. Put it in eval mode and on
            its device before calling.
        frames: uint8 ``(N, T, H, W, 3)``.
        batch_size: clips per forward pass.

    Returns:
        uint8 ``(N, T, H, W, 3)`` reconstructions.
    """
    _check_batch_size(batch_size)
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"clips must be uint8 (N, T, H, W, 3), got {frames.dtype} {frames.shape}")
    device = module_device(vae)
    out = [np.empty((0, *frames.shape[1:]), dtype=np.uint8)]
    for i in range(0, len(frames), batch_size):
        x = frames_to_video(frames[i : i + batch_size], device)
        recon = vae(x, sample=False).recon
        if recon.shape != x.shape:
            raise ValueError(f"VAE returned {tuple(recon.shape)} for input {tuple(x.shape)}")
        out.append(video_to_frames(recon))
    return np.concatenate(out)


@torch.no_grad()
def generate(
    generator: nn.Module,
    vae: nn.Module,
    labels: np.ndarray | None,
    num_samples: int,
    batch_size: int,
    seed: int,
) -> np.ndarray:
    """Sample videos from a latent GAN and decode them with its frozen VAE.

    A pixel-space generator (``space == "pixel"``) emits the clips itself; ``vae`` is then unused.

    Args:
        generator: a LatentGenerator: ``noise_dim``, ``conditional`` and
            ``vae_latents(noise (B, noise_dim), labels (B,) | None)`` -> VAE-scale
            latents ``(B, C, T', H', W')``.
        vae: the VideoVAE whose latent space the GAN models (``decode``).
        labels: int ``(num_samples,)`` class ids, or None for an unconditional GAN.
        num_samples: videos to draw (``len(labels)`` when labels are given).
        batch_size: samples per forward pass.
        seed: noise seed; the same seed and labels give the same videos.

    Returns:
        uint8 ``(num_samples, T, H, W, 3)``.
    """
    _check_batch_size(batch_size)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    device = module_device(generator)
    # Draw all noise up front on the CPU so the result does not depend on
    # batch_size or the device.
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(num_samples, generator.noise_dim, generator=g)
    lab = None
    if generator.conditional:
        if labels is None or len(labels) != num_samples:
            raise ValueError("this GAN is class-conditional: give one label per sample")
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        bad = (lab < 0) | (lab >= generator.num_classes)
        if bool(bad.any()):
            raise ValueError(f"labels must lie in [0, {generator.num_classes}), got {int(lab[bad][0])}")
    out = []
    pixel = getattr(generator, "space", "latent") == "pixel"  # a pixel-space GAN emits clips itself
    for i in range(0, num_samples, batch_size):
        noise_i = noise[i : i + batch_size].to(device)
        lab_i = None if lab is None else lab[i : i + batch_size].to(device)
        if pixel:
            out.append(video_to_frames(generator(noise_i, lab_i)))
            continue
        z = generator.vae_latents(noise_i, lab_i)
        out.append(video_to_frames(vae.decode(z.to(module_device(vae)))))
    return np.concatenate(out)
