"""Evaluate a trained VAE on the test split against the mean-frame baseline."""

from __future__ import annotations

from typing import Any

from vidgen_core.config import EvalConfig
from vidgen_core.errors import UserError


def evaluate_vae(model_dir: str, shard_dir: str, cfg: EvalConfig) -> dict[str, Any]:
    """Score a saved VAE's reconstructions of the test clips.

    Reads at most ``cfg.max_test_clips`` test clips (uint8 ``(N, T, H, W, 3)``),
    reconstructs them in batches of ``cfg.batch_size`` with the posterior mean,
    and scores them with :mod:`vidgen_core.eval.metrics` (mean over clips of the
    per-clip PSNR in dB; mean per-frame SSIM). The same metrics are computed for
    :func:`~vidgen_core.eval.metrics.mean_frame_baseline`, the bar the registry
    gate compares against.

    Args:
        model_dir: directory written by ``vidgen_core.models.io.save_model`` (kind "vae").
        shard_dir: clip shard directory written by ingest.
        cfg: evaluation settings.

    Returns:
        ``{"vae_psnr", "vae_ssim", "baseline_psnr", "baseline_ssim"}`` as floats and
        ``"num_test_clips"`` as an int.

    Raises:
        UserError: the shard set has no test clips (one line).
    """
    from vidgen_core.data.readers import load_clips
    from vidgen_core.eval.inference import default_device, reconstruct
    from vidgen_core.eval.metrics import mean_frame_baseline, psnr, ssim
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
    baseline = mean_frame_baseline(frames)
    return {
        "vae_psnr": psnr(recon, frames),
        "vae_ssim": ssim(recon, frames),
        "baseline_psnr": psnr(baseline, frames),
        "baseline_ssim": ssim(baseline, frames),
        "num_test_clips": int(len(frames)),
    }
