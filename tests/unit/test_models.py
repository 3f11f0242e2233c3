"""Model shapes, the Gaussian posterior, uint8 conversions and save/load round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from vidgen_core.config import GANConfig, VAEConfig
from vidgen_core.models.gan import LatentDiscriminator, LatentGenerator
from vidgen_core.models.io import load_model, save_model
from vidgen_core.models.vae import DiagonalGaussian, VideoVAE, frames_to_video, video_to_frames


@pytest.mark.parametrize(
    ("cfg", "video_shape", "latent_shape"),
    [
        (VAEConfig(), (2, 3, 8, 32, 32), (4, 4, 8, 8)),
        (VAEConfig(channel_mult=[1], temporal_downsample=1, spatial_downsample=2, latent_channels=2), (1, 3, 4, 16, 16), (2, 4, 8, 8)),
        # temporal factor larger than spatial: time halves in both stages, space in the first only
        (VAEConfig(base_channels=8, channel_mult=[1, 2, 2], temporal_downsample=4, spatial_downsample=2), (1, 3, 8, 16, 24), (4, 2, 8, 12)),
        (VAEConfig(base_channels=8, temporal_downsample=1, spatial_downsample=1), (1, 3, 2, 8, 8), (4, 2, 8, 8)),
    ],
)
def test_vae_shapes(cfg: VAEConfig, video_shape: tuple[int, ...], latent_shape: tuple[int, ...]) -> None:
    vae = VideoVAE(cfg)
    x = torch.rand(video_shape) * 2 - 1
    out = vae(x)
    assert out.recon.shape == x.shape
    assert tuple(out.posterior.mean.shape) == (video_shape[0], *latent_shape)
    assert out.posterior.logvar.shape == out.posterior.mean.shape
    assert vae.decode(out.posterior.mean).shape == x.shape
    if video_shape[3] == video_shape[4]:
        assert vae.latent_shape(video_shape[2], video_shape[3]) == latent_shape


def test_vae_rejects_bad_input() -> None:
    vae = VideoVAE(VAEConfig())
    with pytest.raises(ValueError, match="must divide"):
        vae.encode(torch.zeros(1, 3, 8, 30, 32))
    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        vae.encode(torch.zeros(1, 1, 8, 32, 32))
    with pytest.raises(ValueError, match="does not divide"):
        vae.latent_shape(7, 32)


def test_vae_posterior_mode_is_deterministic() -> None:
    vae = VideoVAE(VAEConfig(base_channels=8)).eval()
    x = torch.rand(1, 3, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(vae(x, sample=False).recon, vae(x, sample=False).recon)


def test_diagonal_gaussian() -> None:
    mean = torch.zeros(2, 4, 1, 2, 2)
    g = DiagonalGaussian(mean, torch.full_like(mean, 100.0))
    assert float(g.logvar.max()) == 20.0  # clamped
    standard = DiagonalGaussian(mean, torch.zeros_like(mean))
    assert torch.allclose(standard.kl(), torch.zeros(2))
    assert standard.sample().shape == mean.shape
    gen = torch.Generator().manual_seed(0)
    s1 = standard.sample(gen)
    assert torch.equal(s1, standard.sample(torch.Generator().manual_seed(0)))


def test_frames_video_round_trip() -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 4, 8, 8, 3), dtype=np.uint8)
    video = frames_to_video(frames)
    assert video.shape == (2, 3, 4, 8, 8) and video.dtype == torch.float32
    assert float(video.min()) >= -1.0 and float(video.max()) <= 1.0
    np.testing.assert_array_equal(video_to_frames(video), frames)
    with pytest.raises(ValueError, match="uint8"):
        frames_to_video(frames.astype(np.float32))


@pytest.mark.parametrize("latent_shape", [(4, 4, 8, 8), (2, 2, 3, 3)])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_gan_shapes(latent_shape: tuple[int, ...], num_classes: int) -> None:
    cfg = GANConfig(noise_dim=16, base_channels=8)
    g = LatentGenerator(cfg, latent_shape, num_classes)
    d = LatentDiscriminator(cfg, latent_shape, num_classes)
    labels = torch.tensor([0, 2, 1]) if num_classes else None
    z = g(torch.randn(3, 16), labels)
    assert tuple(z.shape) == (3, *latent_shape)
    logits = d(z, labels)
    assert logits.shape == (3,)
    assert g.conditional == d.conditional == (num_classes > 0)


def test_gan_conditional_needs_labels() -> None:
    cfg = GANConfig(noise_dim=8, base_channels=8)
    g = LatentGenerator(cfg, (4, 2, 4, 4), 3)
    with pytest.raises(ValueError, match="labels"):
        g(torch.randn(2, 8))
    with pytest.raises(ValueError, match="noise"):
        g(torch.randn(2, 7), torch.tensor([0, 1]))
    assert not LatentGenerator(GANConfig(noise_dim=8, base_channels=8, conditional=False), (4, 2, 4, 4), 3).conditional


def test_generator_vae_latents_divides_by_scale() -> None:
    g = LatentGenerator(GANConfig(noise_dim=8, base_channels=8), (4, 2, 4, 4), 0).eval()
    g.latent_scale.fill_(4.0)
    noise = torch.randn(2, 8)
    assert torch.allclose(g.vae_latents(noise), g(noise) / 4.0)


class _Wrapper(nn.Module):
    """Stands in for DDP: the real model is ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def test_vae_save_load_round_trip(tmp_path) -> None:
    cfg = VAEConfig(base_channels=8)
    vae = VideoVAE(cfg).eval()
    save_model(_Wrapper(vae), "vae", cfg.model_dump(), tmp_path / "vae", extra={"clip_len": 8, "size": 16})
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == ["config.json", "weights.safetensors"]
    loaded, doc = load_model(tmp_path / "vae")
    assert not loaded.training
    assert doc["kind"] == "vae" and doc["extra"] == {"clip_len": 8, "size": 16}
    assert doc["model_config"] == json.loads(json.dumps(cfg.model_dump()))
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(vae(x, sample=False).recon, loaded(x, sample=False).recon)


def test_gan_save_load_round_trip_with_spectral_norm(tmp_path) -> None:
    cfg = GANConfig(noise_dim=8, base_channels=8)
    shape, extra = (4, 2, 4, 4), {"latent_shape": [4, 2, 4, 4], "num_classes": 3, "latent_scale": 2.5}
    g, d = LatentGenerator(cfg, shape, 3), LatentDiscriminator(cfg, shape, 3)
    g.latent_scale.fill_(2.5)
    labels = torch.tensor([0, 1])
    for _ in range(3):  # training-mode forwards run power iterations: u, v move away from init
        d(torch.randn(2, *shape), labels)
    g.eval(), d.eval()
    save_model(g, "gan", cfg.model_dump(), tmp_path / "g", extra=extra)
    save_model(d, "gan_discriminator", cfg.model_dump(), tmp_path / "d", extra=extra)
    g2, _ = load_model(tmp_path / "g")
    d2, _ = load_model(tmp_path / "d")
    assert float(g2.latent_scale) == 2.5
    noise, z = torch.randn(2, 8), torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.equal(g(noise, labels), g2(noise, labels))
        assert torch.equal(d(z, labels), d2(z, labels))


def test_load_model_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="unknown model kind"):
        save_model(nn.Linear(1, 1), "bogus", {}, tmp_path)
