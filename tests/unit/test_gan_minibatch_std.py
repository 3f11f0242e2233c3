"""The discriminators' minibatch-std channel: a generator that repeats itself is caught."""

from __future__ import annotations

import pytest
import torch

from vidgen_core.config import GANConfig, PipelineConfig
from vidgen_core.models.gan import LatentDiscriminator, append_minibatch_std


def test_the_minibatch_std_channel_measures_each_group_on_its_own() -> None:
    torch.manual_seed(0)
    real = torch.randn(4, 3, 2, 4, 4)
    fake = torch.randn(1, 3, 2, 4, 4).expand(4, -1, -1, -1, -1)  # one sample repeated: no spread
    out = append_minibatch_std(torch.cat([real, fake]), group=4)
    assert out.shape == (8, 4, 2, 4, 4)
    assert torch.equal(out[:, :3], torch.cat([real, fake]))  # the inputs pass through untouched
    spread = out[:, 3]
    # By hand: the std across the group of 4, per feature and position, averaged.
    expected_real = real.var(dim=0, unbiased=False).add(1e-8).sqrt().mean()
    assert torch.allclose(spread[:4], expected_real.expand(4, 2, 4, 4))
    assert spread[4:].max() < 1e-3  # repeated samples are caught...
    assert spread[:4].min() > 0.5  # ...and the real group, next to them in the batch, is not mixed in
    with pytest.raises(ValueError, match="groups of 4"):
        append_minibatch_std(torch.randn(6, 3, 2, 4, 4), group=4)


def test_a_discriminator_with_minibatch_std_tells_a_repeating_batch_from_a_varied_one() -> None:
    torch.manual_seed(0)
    cfg = GANConfig(base_channels=8, minibatch_std=4, conditional=False)
    d = LatentDiscriminator(cfg, (4, 2, 8, 8), 0).eval()  # eval: spectral norm's power iteration stays put
    varied = torch.randn(4, 4, 2, 8, 8)
    repeated = varied[:1].expand(4, -1, -1, -1, -1)
    # Same first sample, different company: only the minibatch-std channel can tell them apart.
    assert not torch.allclose(d(varied)[0], d(repeated)[0])
    off = LatentDiscriminator(cfg.model_copy(update={"minibatch_std": 0}), (4, 2, 8, 8), 0).eval()
    assert torch.allclose(off(varied)[0], off(repeated)[0])


def test_the_minibatch_std_group_must_divide_the_batches() -> None:
    PipelineConfig.model_validate({"gan": {"minibatch_std": 4}, "train_gan": {"batch_size": 32}})
    with pytest.raises(ValueError, match=r"must divide train_gan.batch_size \(30\)"):
        PipelineConfig.model_validate({"gan": {"minibatch_std": 4}, "train_gan": {"batch_size": 30}})
    with pytest.raises(ValueError, match=r"gan.pixel_d_batch \(6\)"):
        PipelineConfig.model_validate({"gan": {"minibatch_std": 4, "pixel_d_batch": 6}})
    with pytest.raises(ValueError, match="0 \\(off\\) or a group size of at least 2"):
        PipelineConfig.model_validate({"gan": {"minibatch_std": 1}})
