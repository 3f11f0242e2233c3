"""Cheap sample statistics of the latent GAN against the test clips.

No feature network (an FVD needs an I3D download and a GPU-sized budget); four
ratios that a broken GAN fails visibly, each computed on uint8 clips
``(N, T, H, W, 3)`` — generated samples (one per test clip, with the test
clip's label when the GAN is conditional) vs the real test clips:

* ``gan_mean_abs_diff``: mean over RGB channels of |mean sample intensity −
  mean test intensity|, in uint8 levels (0 = same brightness/colour balance).
* ``gan_std_ratio``: pixel standard deviation of samples / of test clips
  (≈1: same contrast; →0: flat grey samples).
* ``gan_motion_ratio``: mean |frame t+1 − frame t| of samples / of test clips
  (≈1: things move as much as in the data; 0: frozen videos).
* ``gan_diversity_ratio``: mean pairwise L2 distance between samples / between
  test clips (≈1: as varied as the data; →0: mode collapse).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vidgen_core.config import EvalConfig
from vidgen_core.errors import UserError

_EPS = 1e-8


def _motion(clips: np.ndarray) -> float:
    x = clips.astype(np.float32)
    return float(np.abs(x[:, 1:] - x[:, :-1]).mean()) if x.shape[1] > 1 else 0.0


def _mean_pairwise_distance(clips: np.ndarray) -> float:
    """Mean L2 distance between distinct clips (pixels scaled to [0, 1])."""
    if len(clips) < 2:
        return 0.0
    flat = torch.from_numpy(clips.reshape(len(clips), -1).astype(np.float32) / 255.0)
    dist = torch.cdist(flat, flat)
    n = len(clips)
    return float(dist.sum() / (n * (n - 1)))


def sample_statistics(samples: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """The four ratios of the module docstring; both inputs uint8 ``(N, T, H, W, 3)``, same shape per clip."""
    for name, a in (("samples", samples), ("real", real)):
        if a.dtype != np.uint8 or a.ndim != 5 or a.shape[-1] != 3 or len(a) == 0:
            raise ValueError(f"{name} must be non-empty uint8 (N, T, H, W, 3), got {a.dtype} {a.shape}")
    if samples.shape[1:] != real.shape[1:]:
        raise ValueError(f"sample clips {samples.shape[1:]} and real clips {real.shape[1:]} differ in shape")
    s, r = samples.astype(np.float32), real.astype(np.float32)
    mean_diff = np.abs(s.mean(axis=(0, 1, 2, 3)) - r.mean(axis=(0, 1, 2, 3))).mean()
    return {
        "gan_mean_abs_diff": float(mean_diff),
        "gan_std_ratio": float(s.std() / (r.std() + _EPS)),
        "gan_motion_ratio": _motion(samples) / (_motion(real) + _EPS),
        "gan_diversity_ratio": _mean_pairwise_distance(samples) / (_mean_pairwise_distance(real) + _EPS),
    }


def evaluate_gan(gan_dir: str, vae_dir: str, shard_dir: str, cfg: EvalConfig, seed: int = 0) -> dict[str, Any]:
    """Sample the GAN once per test clip and compare statistics (see module docstring).

    Raises:
        UserError: the shard set has no test clips (one line).
    """
    from vidgen_core.data.readers import load_clips
    from vidgen_core.eval.inference import default_device, generate
    from vidgen_core.models.io import load_model

    real, labels = load_clips(shard_dir, "test", cfg.max_test_clips)
    if len(real) == 0:
        raise UserError(f"no test clips in '{shard_dir}': raise ingest.test_fraction, then re-run ingest")
    device = default_device()
    generator, _ = load_model(gan_dir, device=device)
    vae, _ = load_model(vae_dir, device=device)
    labels = np.asarray(labels, dtype=np.int64)
    if generator.conditional and (labels.min() < 0 or labels.max() >= generator.num_classes):
        labels = np.arange(len(real)) % generator.num_classes  # unlabelled test clips: cycle the classes
    samples = generate(
        generator, vae, labels if generator.conditional else None,
        num_samples=len(real), batch_size=cfg.batch_size, seed=seed,
    )
    return sample_statistics(samples, real)
