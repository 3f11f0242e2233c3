"""Log what people look at to the evaluate run: reconstruction strips, per-class sample grids, quality curves.

Artifacts (under the run's artifact root):

* ``previews/vae_recon_val.png`` — validation clips (never training clips):
  original above reconstruction, every frame, lossless PNG, upscaled;
* ``previews/gan_samples_by_class.png`` / ``.mp4`` — one row per class of GAN
  samples (middle frame in the PNG; the MP4 animates the grid);
* ``plots/vae_quality_over_steps.png`` — validation PSNR / SSIM / colour ratio
  logged during training, against step.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mlflow import MlflowClient

PREVIEW_CLIPS = 4
SAMPLES_PER_CLASS = 8
QUALITY_METRICS = ("val_psnr", "val_ssim", "val_colour_ratio")


def _preview_clips(shard_dir: str) -> np.ndarray:
    """PREVIEW_CLIPS val (else test) clips, each from a different video where the split has enough."""
    from vidgen_core.data.readers import clips_across_videos

    for split in ("val", "test"):
        frames, _ = clips_across_videos(shard_dir, split, PREVIEW_CLIPS)
        if len(frames):
            return frames
    return np.zeros((0,), dtype=np.uint8)


def recon_strip_for(vae_dir: str, shard_dir: str) -> np.ndarray | None:
    """The validation reconstruction strip (uint8 (H, W, 3)), or None without val/test clips."""
    from vidgen_core.eval.inference import reconstruct
    from vidgen_core.eval.previews import recon_strip
    from vidgen_core.models.io import load_model

    frames = _preview_clips(shard_dir)
    if frames.ndim != 5:
        return None
    vae, _ = load_model(vae_dir)
    return recon_strip(frames, reconstruct(vae, frames, PREVIEW_CLIPS))


def class_samples(gan_dir: str, vae_dir: str, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """SAMPLES_PER_CLASS GAN samples per class (one row for an unconditional GAN) and the row names."""
    from vidgen_core.eval.inference import generate
    from vidgen_core.models.io import load_model, read_model_config

    generator, _ = load_model(gan_dir)
    vae, _ = load_model(vae_dir)
    names = list(read_model_config(gan_dir).get("extra", {}).get("label_names") or [])
    if not generator.conditional:
        return [generate(generator, vae, None, SAMPLES_PER_CLASS, SAMPLES_PER_CLASS, seed)], ["samples"]
    rows = []
    for c in range(generator.num_classes):
        labels = np.full(SAMPLES_PER_CLASS, c, dtype=np.int64)
        rows.append(generate(generator, vae, labels, SAMPLES_PER_CLASS, SAMPLES_PER_CLASS, seed + c))
    return rows, (names if len(names) == generator.num_classes else [str(c) for c in range(generator.num_classes)])


def quality_plot(client: MlflowClient, train_run_id: str, path: str) -> bool:
    """Plot the training run's validation metrics against step into ``path`` (PNG); False when none were logged."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never look for a display
    import matplotlib.pyplot as plt

    series = {m: client.get_metric_history(train_run_id, m) for m in QUALITY_METRICS}
    series = {m: sorted((h.step, h.value) for h in hist) for m, hist in series.items() if hist}
    if not series:
        return False
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3), squeeze=False)
    for ax, (name, points) in zip(axes[0], series.items()):
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o", markersize=3)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def log_previews(
    client: MlflowClient, run_id: str, shard_dir: str, vae_dir: str, gan_dir: str, train_vae_run_id: str | None,
    scratch_dir: str,
) -> list[str]:
    """Write and log the artifacts of the module docstring; returns their artifact paths."""
    from vidgen_core.eval.previews import grid_video, sample_grid, write_png
    from vidgen_core.video.encode import write_mp4

    logged: list[str] = []
    os.makedirs(scratch_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_dir) as tmp:
        strip = recon_strip_for(vae_dir, shard_dir)
        if strip is not None:
            client.log_artifact(run_id, str(write_png(strip, os.path.join(tmp, "vae_recon_val.png"))), "previews")
            logged.append("previews/vae_recon_val.png")
        rows, _names = class_samples(gan_dir, vae_dir)
        client.log_artifact(run_id, str(write_png(sample_grid(rows), os.path.join(tmp, "gan_samples_by_class.png"))), "previews")
        video = grid_video(rows)
        video = video[:, : video.shape[1] // 2 * 2, : video.shape[2] // 2 * 2]  # H.264 needs even sizes
        write_mp4(video, os.path.join(tmp, "gan_samples_by_class.mp4"))
        client.log_artifact(run_id, os.path.join(tmp, "gan_samples_by_class.mp4"), "previews")
        logged += ["previews/gan_samples_by_class.png", "previews/gan_samples_by_class.mp4"]
        plot = os.path.join(tmp, "vae_quality_over_steps.png")
        if train_vae_run_id and quality_plot(client, train_vae_run_id, plot):
            client.log_artifact(run_id, plot, "plots")
            logged.append("plots/vae_quality_over_steps.png")
    return logged
