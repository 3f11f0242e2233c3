"""PSNR / SSIM / mean-frame baseline against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidgen_core.eval.metrics import (
    MAX_PSNR_DB,
    mean_frame_baseline,
    psnr,
    psnr_per_clip,
    ssim,
    ssim_per_clip,
)


# torchmetrics keeps data_range in float32, so values agree to ~1e-6 dB, not 1e-12.
TOL_DB = 1e-5


def _clips(n: int = 2, t: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    # Values in [20, 230) so +/- 20 never clips at 0 or 255.
    return np.random.default_rng(seed).integers(20, 230, (n, t, h, w, 3), dtype=np.uint8)


def test_psnr_uniform_error_matches_hand_value():
    target = _clips()
    pred = target + np.uint8(10)  # every value off by exactly 10 -> MSE = 100
    assert psnr(pred, target) == pytest.approx(20 * math.log10(255 / 10), abs=TOL_DB)  # 28.1308 dB
    assert psnr(pred, target) == pytest.approx(28.1308, abs=1e-4)


def test_psnr_known_mse_from_mixed_errors():
    target = _clips(n=1)
    pred = target.copy()
    pred[..., :8, :] += 20  # half the pixels off by 20, half exact -> MSE = 400 / 2 = 200
    assert psnr(pred, target) == pytest.approx(10 * math.log10(255**2 / 200), abs=TOL_DB)


def test_psnr_is_mean_over_clips_of_per_clip_psnr():
    target = _clips(n=2)
    pred = target.copy()
    pred[0] += 10
    pred[1] -= 20
    per_clip = psnr_per_clip(pred, target)
    expected = [20 * math.log10(255 / 10), 20 * math.log10(255 / 20)]
    np.testing.assert_allclose(per_clip, expected, atol=TOL_DB)
    assert psnr(pred, target) == pytest.approx(sum(expected) / 2, abs=TOL_DB)


def test_psnr_identical_is_capped_not_infinite():
    target = _clips()
    assert psnr(target, target) == MAX_PSNR_DB
    mixed = target.copy()
    mixed[1] += 10  # one exact clip, one with a 28.13 dB error: the mean stays finite
    assert psnr(mixed, target) == pytest.approx((MAX_PSNR_DB + 20 * math.log10(25.5)) / 2, abs=TOL_DB)


def test_psnr_chunking_does_not_change_the_result(monkeypatch):
    import vidgen_core.eval.metrics as metrics

    target = _clips(n=5, seed=3)
    pred = _clips(n=5, seed=4)
    whole = psnr_per_clip(pred, target)
    monkeypatch.setattr(metrics, "_CHUNK_VALUES", 1)  # one clip per chunk
    np.testing.assert_allclose(psnr_per_clip(pred, target), whole, atol=1e-12)
    np.testing.assert_allclose(ssim_per_clip(pred, target), metrics.ssim_per_clip(pred, target))


def test_ssim_identical_is_one():
    target = _clips()
    assert ssim(target, target) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(ssim_per_clip(target, target), [1.0, 1.0], atol=1e-9)


def test_ssim_of_constant_frames_matches_luminance_formula():
    # Constant frames have zero variance, so SSIM reduces to its luminance term:
    # (2*mx*my + C1) / (mx^2 + my^2 + C1), with C1 = (0.01 * 255)^2.
    pred = np.full((1, 2, 16, 16, 3), 100, dtype=np.uint8)
    target = np.full((1, 2, 16, 16, 3), 110, dtype=np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)  # 0.995476
    # SSIM runs in float32 (17x faster on CPU): on flat frames E[x^2] - E[x]^2 cancels to within
    # ~2e-4 of SSIM; on real clips the per-clip values moved by at most 7e-6 from float64.
    assert ssim(pred, target) == pytest.approx(expected, abs=5e-4)


def test_ssim_drops_with_noise_and_handles_tiny_frames():
    target = _clips(n=1, h=8, w=8)  # smaller than the default 11-px window
    noisy = np.clip(target.astype(int) + np.random.default_rng(1).integers(-40, 41, target.shape), 0, 255)
    value = ssim(noisy.astype(np.uint8), target)
    assert -1.0 <= value < 0.95


def test_mean_frame_baseline_by_hand():
    clips = np.zeros((2, 3, 2, 2, 3), dtype=np.uint8)
    clips[0, :, 0, 0, 0] = [10, 20, 30]  # mean 20
    clips[0, :, 1, 1, 2] = [0, 1, 1]  # mean 0.667 -> rounds to 1
    clips[1] = 200  # static clip: its own baseline
    base = mean_frame_baseline(clips)
    assert base.shape == clips.shape and base.dtype == np.uint8
    assert (base[0, :, 0, 0, 0] == 20).all()
    assert (base[0, :, 1, 1, 2] == 1).all()
    assert (base[0, :, 0, 1] == 0).all()
    np.testing.assert_array_equal(base[1], clips[1])
    assert (base[:, 0] == base[:, 2]).all()  # the same frame at every t


def test_mean_frame_baseline_is_perfect_on_static_clips():
    still = np.repeat(_clips(n=2, t=1), 4, axis=1)
    assert psnr(mean_frame_baseline(still), still) == MAX_PSNR_DB


@pytest.mark.parametrize(
    "pred, target",
    [
        (np.zeros((1, 2, 8, 8, 3), np.float32), np.zeros((1, 2, 8, 8, 3), np.uint8)),
        (np.zeros((1, 2, 8, 8, 3), np.uint8), np.zeros((1, 3, 8, 8, 3), np.uint8)),
        (np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8)),
        (np.zeros((0, 2, 8, 8, 3), np.uint8), np.zeros((0, 2, 8, 8, 3), np.uint8)),
    ],
)
def test_bad_inputs_raise(pred, target):
    with pytest.raises(ValueError):
        psnr(pred, target)
    with pytest.raises(ValueError):
        ssim(pred, target)
