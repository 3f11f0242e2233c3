"""Batched reconstruction and GAN sampling helpers shared by eval and the pyfunc models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidgen_core.config import GANConfig, VAEConfig
from vidgen_core.eval.inference import generate, reconstruct
from vidgen_core.models.gan import LatentGenerator
from vidgen_core.models.vae import VideoVAE


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    vae = VideoVAE(VAEConfig(base_channels=4, channel_mult=[1], latent_channels=2)).eval()
    latent_shape = vae.latent_shape(4, 16)
    gen = LatentGenerator(GANConfig(noise_dim=8, base_channels=4), latent_shape, num_classes=3).eval()
    uncond = LatentGenerator(GANConfig(noise_dim=8, base_channels=4, conditional=False), latent_shape, 3).eval()
    return vae, gen, uncond


def test_reconstruct_shape_dtype_and_batch_independence(tiny_models):
    vae, _, _ = tiny_models
    clips = np.random.default_rng(0).integers(0, 256, (5, 4, 16, 16, 3), dtype=np.uint8)
    a = reconstruct(vae, clips, batch_size=2)
    b = reconstruct(vae, clips, batch_size=5)
    assert a.shape == clips.shape and a.dtype == np.uint8
    # Batch composition must not change the output (eval mode, no sampling):
    # allow off-by-one from float rounding differences between batch shapes.
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert reconstruct(vae, clips[:0], batch_size=2).shape == (0, 4, 16, 16, 3)


def test_generate_is_deterministic_in_seed_and_batch_size(tiny_models):
    vae, gen, _ = tiny_models
    labels = np.array([0, 1, 2, 1, 0])
    a = generate(gen, vae, labels, num_samples=5, batch_size=2, seed=7)
    b = generate(gen, vae, labels, num_samples=5, batch_size=5, seed=7)
    c = generate(gen, vae, labels, num_samples=5, batch_size=5, seed=8)
    assert a.shape == (5, 4, 16, 16, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert not np.array_equal(b, c)


def test_generate_checks_labels(tiny_models):
    vae, gen, uncond = tiny_models
    with pytest.raises(ValueError, match="one label per sample"):
        generate(gen, vae, None, num_samples=2, batch_size=2, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        generate(gen, vae, np.array([0, 3]), num_samples=2, batch_size=2, seed=0)
    out = generate(uncond, vae, None, num_samples=3, batch_size=2, seed=0)
    assert out.shape == (3, 4, 16, 16, 3)
