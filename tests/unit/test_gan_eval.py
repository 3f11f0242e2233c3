"""GAN sample statistics on hand-made clips."""

from __future__ import annotations

import numpy as np
import pytest

from vidgen_core.eval.gan_eval import sample_statistics


def _clips(values: list[list[int]]) -> np.ndarray:
    """One clip per row, one frame per value: (N, T, 2, 2, 3) uint8 of constant frames."""
    a = np.array(values, dtype=np.uint8)[:, :, None, None, None]
    return np.broadcast_to(a, (*a.shape[:2], 2, 2, 3)).copy()


def test_identical_sets_score_one_and_zero() -> None:
    real = _clips([[0, 100], [50, 50]])
    stats = sample_statistics(real.copy(), real)
    assert stats["gan_mean_abs_diff"] == 0
    assert stats["gan_std_ratio"] == pytest.approx(1)
    assert stats["gan_motion_ratio"] == pytest.approx(1)
    assert stats["gan_diversity_ratio"] == pytest.approx(1)


def test_collapsed_frozen_samples_score_zero() -> None:
    real = _clips([[0, 100], [50, 50]])  # mean 50, motion: clip 0 moves by 100, clip 1 not -> 50
    fake = _clips([[60, 60], [60, 60]])  # one frozen grey clip twice
    stats = sample_statistics(fake, real)
    assert stats["gan_mean_abs_diff"] == pytest.approx(10)
    assert stats["gan_std_ratio"] == pytest.approx(0, abs=1e-6)
    assert stats["gan_motion_ratio"] == 0
    assert stats["gan_diversity_ratio"] == 0


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        sample_statistics(_clips([[0, 1, 2]]), _clips([[0, 1]]))
