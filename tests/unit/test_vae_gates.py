"""A grey-blob VAE is refused by the registry gates (the failure that once passed them)."""

from __future__ import annotations

import numpy as np

from vidgen_core.config import RegisterConfig
from vidgen_core.eval.evaluate import vae_figures
from vidgen_core.tracking.promotion import Champion, decide, gate_failures


def _coloured_clips(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    clips = np.zeros((n, 4, 16, 16, 3), dtype=np.uint8)
    clips[:] = rng.integers(0, 40, size=(n, 1, 1, 1, 3))
    for i in range(n):
        colour = rng.integers(110, 256, size=3)
        for t in range(4):
            clips[i, t, 4 + t : 10 + t, 3:9] = colour  # a coloured square moving down
    return clips


def _gan_ok() -> dict[str, float]:
    return {"gan_fd": 1.0, "prior_fd": 5.0}


def test_grey_blob_reconstructions_fail_the_gates():
    clips = _coloured_clips()
    grey = clips.mean(axis=-1, keepdims=True).repeat(3, axis=-1).round().astype(np.uint8)  # shapes right, colour gone
    figures = vae_figures(grey, clips, latent_values=256)
    assert figures["vae_psnr"] > figures["baseline_psnr"]  # PSNR alone would have let it through
    assert figures["vae_colour_ratio"] < 0.1
    failures = gate_failures({**figures, **_gan_ok()}, RegisterConfig())
    assert any("colour ratio" in f for f in failures)
    assert not decide({**figures, **_gan_ok()}, RegisterConfig(), None, "1").gate_passed


def test_faithful_reconstructions_pass_and_ssim_must_beat_the_baseline():
    clips = _coloured_clips()
    figures = vae_figures(clips, clips, latent_values=256)
    assert figures["vae_colour_ratio"] == 1.0 and figures["vae_compression"] == 4 * 16 * 16 * 3 / 256
    assert gate_failures({**figures, **_gan_ok()}, RegisterConfig()) == []
    worse = {**figures, "vae_ssim": figures["baseline_ssim"] - 0.01}
    assert any("SSIM" in f for f in gate_failures({**worse, **_gan_ok()}, RegisterConfig()))


def test_gan_must_beat_the_vae_prior():
    clips = _coloured_clips()
    figures = vae_figures(clips, clips, latent_values=256)
    failures = gate_failures({**figures, "gan_fd": 6.0, "prior_fd": 5.0}, RegisterConfig())
    assert failures and "VAE-prior" in failures[0]


def test_champion_on_other_data_is_replaced():
    clips = _coloured_clips()
    metrics = {**vae_figures(clips, clips, latent_values=256), **_gan_ok()}
    same = decide(metrics, RegisterConfig(), Champion("1", 1e9, "abc"), "2", manifest="abc")
    assert not same.promote  # same data: the champion's higher value wins
    other = decide(metrics, RegisterConfig(), Champion("1", 1e9, "old"), "2", manifest="abc")
    assert other.promote and "other data" in other.reason
