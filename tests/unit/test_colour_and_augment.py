"""The brightness/colour basis, the VAE options built on it, and the training symmetries."""

from __future__ import annotations

import itertools

import pytest
import torch

from vidgen_core.config import VAEConfig
from vidgen_core.models.blocks import depth_to_space, space_to_depth
from vidgen_core.models.colour import ColourBasis
from vidgen_core.models.vae import VideoVAE
from vidgen_core.train.augment import augment_batch


def test_basis_round_trips_and_weights_colour():
    x = torch.rand(2, 3, 4, 5, 5) * 2 - 1
    basis = ColourBasis(2.5)
    assert torch.allclose(basis.inverse(basis(x)), x, atol=1e-6)
    grey = torch.full((1, 3, 1, 1, 1), 0.3)
    assert torch.allclose(basis(grey)[:, 1:], torch.zeros(1, 2, 1, 1, 1), atol=1e-7)  # grey has no colour
    # A pure colour change (equal brightness) costs k^2 times more than under RGB L2.
    red, green = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1, 1), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1, 1)
    rgb_err = (red - green).pow(2).sum()
    assert (basis(red) - basis(green)).pow(2).sum() == pytest.approx(2.5**2 * rgb_err.item(), rel=1e-5)
    assert (ColourBasis(1.0)(red) - ColourBasis(1.0)(green)).pow(2).sum() == pytest.approx(rgb_err.item(), rel=1e-5)


def test_space_to_depth_round_trip():
    x = torch.randn(2, 3, 4, 8, 12)
    assert space_to_depth(x, 2).shape == (2, 12, 4, 4, 6)
    assert torch.equal(depth_to_space(space_to_depth(x, 2), 2), x)


@pytest.mark.parametrize("patch", [1, 2])
def test_vae_options_keep_shapes(patch):
    vae = VideoVAE(VAEConfig(base_channels=8, patch_size=patch, norm="none", colour_weight=2.5))
    out = vae(torch.rand(2, 3, 8, 16, 16) * 2 - 1, sample=False)
    assert out.recon.shape == (2, 3, 8, 16, 16)
    assert out.posterior.mean.shape == (2, 4, 4, 4, 4)


def test_a_model_saved_before_the_colour_basis_is_refused_in_one_line():
    from vidgen_core.models.io import build_model

    old = dict(base_channels=8, channel_mult=[1, 2], latent_channels=4, temporal_downsample=2, spatial_downsample=4)
    with pytest.raises(ValueError, match="config.json has no '.*': it was saved by an older vidgen"):
        build_model("vae", old, {})


def test_augment_is_a_symmetry_and_depends_on_the_global_index_only(monkeypatch):
    x = torch.rand(4, 3, 4, 6, 6)
    kinds = ["hflip", "vflip", "transpose", "reverse", "rgb_permute"]
    a = augment_batch(x, kinds, seed=1, step=5)
    assert torch.equal(a, augment_batch(x, kinds, seed=1, step=5))  # reproducible
    assert not torch.equal(a, augment_batch(x, kinds, seed=1, step=6))
    for i in range(4):  # every output holds exactly the input's values, rearranged
        assert torch.equal(a[i].flatten().sort().values, x[i].flatten().sort().values)
    # Two ranks with 2 samples each augment like one rank with all 4.
    import vidgen_core.train.augment as aug

    halves = []
    for rank in (0, 1):
        monkeypatch.setattr(aug, "dist_rank", lambda rank=rank: rank)
        monkeypatch.setattr(aug, "dist_world_size", lambda: 2)
        halves.append(augment_batch(x[2 * rank : 2 * rank + 2], kinds, seed=1, step=5))
    assert torch.equal(torch.cat(halves), a)


def test_rgb_permute_draws_every_order():
    x = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(64, 3, 1, 1, 1).contiguous()
    out = augment_batch(x, ["rgb_permute"], seed=0, step=1)
    seen = {tuple(int(v) for v in out[i, :, 0, 0, 0]) for i in range(64)}
    assert seen == set(itertools.permutations(range(3)))


def test_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment_batch(torch.zeros(1, 3, 1, 2, 2), ["rotate"], seed=0, step=1)
