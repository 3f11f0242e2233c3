"""The GAN figures of one clip set: judge-based, colour and diversity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vidgen_core.eval.gan_eval import score_set


class BrightnessJudge(nn.Module):
    """Stand-in judge: class 1 when a clip is bright, else 0; features = mean colour."""

    num_classes = 2
    num_features = 3

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        return clips.float().mean(dim=(1, 2, 3)) / 255.0

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        bright = clips.float().mean(dim=(1, 2, 3, 4)) > 100
        return torch.stack([(~bright).float(), bright.float()], dim=1) * 10


class Features(nn.Module):
    num_features = 3

    def __init__(self, judge: BrightnessJudge) -> None:
        super().__init__()
        self.judge = judge

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.judge.features(clips)


def _set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    clips = np.zeros((n, 2, 8, 8, 3), dtype=np.uint8)
    for i, lab in enumerate(labels):
        clips[i] = rng.integers(150, 250, size=3) if lab else rng.integers(0, 60, size=3)
        clips[i, :, 2:5, 2:5] = rng.integers(0, 256, size=3)  # a coloured object
    return clips, labels


def test_real_against_itself_scores_the_ideal():
    judge = BrightnessJudge()
    clips, labels = _set(20, 0)
    out = score_set(clips, labels, clips, labels, Features(judge), judge)
    assert out["fd"] == pytest.approx(0.0, abs=1e-6)
    assert out["precision"] == 1.0 and out["recall"] == 1.0
    assert out["class_consistency"] == 1.0
    assert out["diversity_ratio"] == pytest.approx(1.0)
    assert out["colour_ratio"] == pytest.approx(1.0)


def test_grey_collapsed_samples_score_badly():
    judge = BrightnessJudge()
    real, labels = _set(20, 0)
    grey = np.full_like(real, 90)
    out = score_set(grey, labels, real, labels, Features(judge), judge)
    assert out["class_consistency"] == 0.5  # every sample judged "dark": right for half the labels
    assert out["diversity_ratio"] == 0.0
    assert out["fd"] > 0.01 and out["precision"] == 0.0
    assert out["colour_ratio"] == 0.0  # no object at all, so no colour
