"""Metrics of a set of generated clips against real clips (torch/numpy; small pure functions).

* :func:`frechet_distance`: torchmetrics' ``FrechetInceptionDistance`` with a
  custom feature module (the in-domain judge) in place of Inception.
* :func:`precision_recall`: Kynkäänniemi et al. 2019 (k-NN manifolds, k = 3)
  in the same feature space: precision = fraction of fakes inside the real
  manifold (quality), recall = fraction of reals inside the fake manifold
  (coverage).
* :func:`diversity_ratio`: mean pairwise pixel distance of same-class samples
  / that of same-class real clips (1: as varied as the data; 0: one sample).
* :func:`colourfulness`: mean chroma over each clip's own foreground; the
  ratio samples/real is the GAN's colour figure.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vidgen_core.eval.metrics import chroma, foreground_mask


def _features(module: nn.Module, clips: np.ndarray, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([module(torch.from_numpy(clips[i : i + batch_size])) for i in range(0, len(clips), batch_size)])


def frechet_distance(feature: nn.Module, real: np.ndarray, fake: np.ndarray, batch_size: int = 64) -> float:
    """Fréchet distance between uint8 clip sets (N, T, H, W, 3) in ``feature``'s space (torchmetrics FID).

    ``feature`` maps uint8 clips (B, T, H, W, 3) to (B, F) and has ``num_features``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError("the Fréchet distance needs at least 2 clips on each side")
    # Its running sums are float64 already; set_dtype would also cast the feature module's weights.
    fid = FrechetInceptionDistance(feature=feature, normalize=False)
    for i in range(0, len(real), batch_size):
        fid.update(torch.from_numpy(real[i : i + batch_size]), real=True)
    for i in range(0, len(fake), batch_size):
        fid.update(torch.from_numpy(fake[i : i + batch_size]), real=False)
    return float(fid.compute())


def features(module: nn.Module, clips: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, F) float64 features of uint8 clips (N, T, H, W, 3)."""
    return _features(module, clips, batch_size).double().numpy()


def _knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    # Distance of each point to its k-th nearest neighbour other than itself.
    d = torch.cdist(feats, feats)
    return d.kthvalue(k + 1, dim=1).values


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of feature sets real (N, F), fake (M, F).

    A point lies in a set's manifold when it is within the k-NN radius of at
    least one of the set's points. Identical sets score (1, 1); far-apart
    clusters (0, 0).
    """
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points per set")
    r = torch.as_tensor(real, dtype=torch.float64)
    f = torch.as_tensor(fake, dtype=torch.float64)
    r_rad, f_rad = _knn_radii(r, k), _knn_radii(f, k)
    d = torch.cdist(f, r)  # (M, N)
    precision = (d <= r_rad[None, :]).any(dim=1).double().mean()
    recall = (d.T <= f_rad[None, :]).any(dim=1).double().mean()
    return float(precision), float(recall)


def mean_pairwise_distance(clips: np.ndarray) -> float:
    """Mean L2 distance between distinct clips of uint8 (N, T, H, W, 3), pixels scaled to [0, 1]; 0 for N < 2."""
    if len(clips) < 2:
        return 0.0
    flat = torch.from_numpy(clips.reshape(len(clips), -1).astype(np.float32) / 255.0)
    n = len(clips)
    return float(torch.cdist(flat, flat).sum() / (n * (n - 1)))


def diversity_ratio(samples: np.ndarray, sample_labels: np.ndarray, real: np.ndarray, real_labels: np.ndarray) -> float:
    """Mean over classes of (pairwise distance among that class's samples / among its real clips).

    Classes with fewer than two clips on either side are skipped; NaN if none is left.
    Unconditional sets: pass all-zero labels.
    """
    ratios = []
    for c in np.unique(real_labels):
        s, r = samples[sample_labels == c], real[real_labels == c]
        if len(s) >= 2 and len(r) >= 2:
            ref = mean_pairwise_distance(r)
            if ref > 0:
                ratios.append(mean_pairwise_distance(s) / ref)
    return float(np.mean(ratios)) if ratios else float("nan")


def colourfulness(clips: np.ndarray) -> float:
    """Mean chroma (uint8 levels) over the foreground of each clip (:func:`foreground_mask`).

    0.0 when no clip has a foreground: flat clips show no coloured object at all.
    """
    mask = foreground_mask(clips)
    if not mask.any():
        return 0.0
    return float(chroma(clips)[mask].mean())
