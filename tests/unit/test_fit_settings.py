"""FitSettings: the torch-side view of a trainer's config section, kept in step with it."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from vidgen_core.config import TrainConfig, VAETrainConfig
from vidgen_core.train.settings import FitSettings


def test_every_loop_setting_is_a_config_setting() -> None:
    names = {f.name for f in dataclasses.fields(FitSettings)}
    required = {f.name for f in dataclasses.fields(FitSettings) if f.default is dataclasses.MISSING}
    assert names <= set(VAETrainConfig.model_fields)  # the VAE's section carries them all
    assert required <= set(TrainConfig.model_fields)  # the GAN's section carries every shared one


def test_of_keeps_what_the_loops_read() -> None:
    vae = FitSettings.of(VAETrainConfig(steps=7, kl_weight=1e-6, augment=["hflip"], num_workers=4))
    assert (vae.steps, vae.kl_weight, vae.augment) == (7, 1e-6, ("hflip",))
    assert not hasattr(vae, "num_workers")  # Ray Train's business, not the loop's
    gan = FitSettings.of(TrainConfig(steps=3, lr=2e-4))
    assert (gan.steps, gan.lr, gan.kl_weight, gan.adv_weight, gan.augment) == (3, 2e-4, 0.0, 0.0, ())
    assert FitSettings.of(gan) is gan
    with pytest.raises(ValueError, match=r"training settings lack \['lr'"):
        FitSettings.of(SimpleNamespace(steps=3))
