"""gan.generator_channels: the latent generator's width, set apart from the discriminators'."""

from __future__ import annotations

import torch

from vidgen_core.config import GANConfig
from vidgen_core.models.gan import LatentGenerator, build_discriminator
from vidgen_core.models.io import build_model, load_model, save_model

EXTRA = {"latent_shape": [4, 2, 8, 8], "num_classes": 3}


def test_generator_channels_widens_the_generator_only() -> None:
    cfg = GANConfig(base_channels=8, noise_dim=16, generator_channels=12)
    g = LatentGenerator(cfg, (4, 2, 8, 8), num_classes=3)
    assert g.conv_out.in_channels == 12 and g.block1.conv1.in_channels == 24
    assert build_discriminator(cfg, (4, 2, 8, 8), 3).conv1.out_channels == 8  # the latent D keeps base_channels
    assert LatentGenerator(cfg.model_copy(update={"generator_channels": None}), (4, 2, 8, 8), 3).conv_out.in_channels == 8


def test_a_wider_generator_saves_and_loads_and_old_configs_stay_base_channels_wide(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = GANConfig(base_channels=8, noise_dim=16, generator_channels=12)
    g = LatentGenerator(cfg, (4, 2, 8, 8), num_classes=3)
    save_model(g, "gan", cfg.model_dump(), tmp_path / "g", extra=EXTRA)
    loaded, _ = load_model(tmp_path / "g")
    noise, labels = torch.randn(5, 16), torch.tensor([0, 1, 2, 0, 1])
    assert torch.equal(g.eval()(noise, labels), loaded(noise, labels))

    old = GANConfig(base_channels=8, noise_dim=16).model_dump()
    del old["generator_channels"]  # a generator saved before the setting existed
    assert build_model("gan", old, EXTRA).conv_out.in_channels == 8
