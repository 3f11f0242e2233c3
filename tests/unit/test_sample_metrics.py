"""GAN sample metrics and the colour figure against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vidgen_core.eval.metrics import chroma, foreground_mask, saturation_ratio
from vidgen_core.eval.sample_metrics import (
    colourfulness, diversity_ratio, frechet_distance, mean_pairwise_distance, precision_recall,
)


class MeanColour(nn.Module):
    """A tiny feature module: per-clip mean of each channel (B, 3), in [0, 1], through a float32 layer."""

    num_features = 3

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Linear(3, 3, bias=True)  # weights make a dtype mix-up fail, as with the real judge
        with torch.no_grad():
            self.scale.weight.copy_(torch.eye(3))
            self.scale.bias.zero_()

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.scale(clips.float().mean(dim=(1, 2, 3)) / 255.0)


def _clips(n: int, seed: int, lo: int = 0, hi: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(lo, hi, size=(n, 2, 4, 4, 3), dtype=np.uint8)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    a = _clips(40, 0)
    assert frechet_distance(MeanColour(), a, a.copy()) == pytest.approx(0.0, abs=1e-6)
    brighter = np.clip(a.astype(int) + 50, 0, 255).astype(np.uint8)
    assert frechet_distance(MeanColour(), a, brighter) > 0.01


def test_precision_recall_identical_sets_and_far_clusters():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 4))
    assert precision_recall(real, real.copy(), k=3) == pytest.approx((1.0, 1.0))
    assert precision_recall(real, real + 100.0, k=3) == pytest.approx((0.0, 0.0))
    # Fakes collapsed onto one real point: precise, but they cover almost nothing.
    p, r = precision_recall(real, np.repeat(real[:1], 50, axis=0) + 1e-9, k=3)
    assert p == 1.0 and r < 0.2


def test_saturation_ratio_hand_values():
    clips = np.zeros((1, 1, 4, 4, 3), dtype=np.uint8)
    clips[0, 0, :2, :2] = (200, 100, 50)  # a 2x2 object of chroma 150 on black
    assert foreground_mask(clips).sum() == 4
    assert chroma(clips)[0, 0, 0, 0] == 150
    half = clips.copy()
    half[0, 0, :2, :2] = (150, 100, 75)  # chroma 75
    assert saturation_ratio(half, clips) == pytest.approx(0.5)
    grey = clips.copy()
    grey[0, 0, :2, :2] = 117  # the object's grey: no colour left
    assert saturation_ratio(grey, clips) == 0.0
    assert colourfulness(clips) == pytest.approx(150.0)


def test_diversity_ratio_one_for_the_data_zero_for_a_single_sample():
    real = _clips(12, 1)
    labels = np.repeat([0, 1, 2], 4)
    assert diversity_ratio(real, labels, real, labels) == pytest.approx(1.0)
    collapsed = np.repeat(real[:1], 12, axis=0)
    assert diversity_ratio(collapsed, labels, real, labels) == 0.0
    assert mean_pairwise_distance(real[:1]) == 0.0
