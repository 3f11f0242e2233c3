"""Evaluate a trained VAE on the test split against the mean-frame baseline."""

from __future__ import annotations

from typing import Any

import numpy as np

from vidgen_core.config import EvalConfig
from vidgen_core.errors import UserError


def vae_figures(recon: np.ndarray, frames: np.ndarray, latent_values: int) -> dict[str, float]:
    """Reconstruction figures of uint8 clips (N, T, H, W, 3) and their recons, plus the mean-frame baseline's.

    PSNR and SSIM per clip (mean and std), foreground saturation ratio (colour
    kept: 1.0; grey blobs: ~0.2), and the compression factor = pixel values
    (T·H·W·3) / latent values per clip.
    """
    from vidgen_core.eval.metrics import mean_frame_baseline, psnr_per_clip, saturation_ratio, ssim_per_clip

    baseline = mean_frame_baseline(frames)
    p, s = psnr_per_clip(recon, frames), ssim_per_clip(recon, frames)
    bp, bs = psnr_per_clip(baseline, frames), ssim_per_clip(baseline, frames)
    return {
        "vae_psnr": float(p.mean()), "vae_psnr_std": float(p.std()),
        "vae_ssim": float(s.mean()), "vae_ssim_std": float(s.std()),
        "vae_colour_ratio": saturation_ratio(recon, frames),
        "baseline_psnr": float(bp.mean()), "baseline_psnr_std": float(bp.std()),
        "baseline_ssim": float(bs.mean()), "baseline_ssim_std": float(bs.std()),
        "baseline_colour_ratio": saturation_ratio(baseline, frames),
        "vae_compression": float(np.prod(frames.shape[1:])) / float(latent_values),
    }


def evaluate_vae(model_dir: str, shard_dir: str, cfg: EvalConfig) -> dict[str, Any]:
    """Score a saved VAE's reconstructions of the test clips (posterior mean, batches of ``cfg.batch_size``).

    Reads at most ``cfg.max_test_clips`` test clips (uint8 ``(N, T, H, W, 3)``);
    see :func:`vae_figures` for what is returned (plus ``num_test_clips``).

    Raises:
        UserError: the shard set has no test clips (one line).
    """
    from vidgen_core.data.readers import load_clips
    from vidgen_core.eval.inference import default_device, reconstruct
    from vidgen_core.models.io import load_model

    frames, _ = load_clips(shard_dir, "test", cfg.max_test_clips)
    if len(frames) == 0:
        raise UserError(
            f"no test clips in '{shard_dir}': add more videos or raise ingest.test_fraction, "
            "then re-run ingest"
        )
    model, _config = load_model(model_dir, device=default_device())
    model.eval()
    recon = reconstruct(model, frames, cfg.batch_size)  # batched, under torch.no_grad
    latent_values = int(np.prod(model.latent_dims(*frames.shape[1:4])))
    return {**vae_figures(recon, frames, latent_values), "num_test_clips": int(len(frames))}
