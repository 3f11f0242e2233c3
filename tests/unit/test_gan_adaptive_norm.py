"""The latent generator's adaptive GroupNorm: what GroupNorm removes per sample, the input puts back."""

from __future__ import annotations

import torch
from torch import nn

from vidgen_core.config import GANConfig
from vidgen_core.models.gan import AdaptiveGroupNorm, LatentGenerator
from vidgen_core.models.io import build_model, load_model, save_model


def test_group_norm_erases_a_per_sample_offset_and_the_adaptive_norm_restores_it_from_the_input() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 2, 4, 4)
    shifted = x + torch.tensor([0.0, 3.0]).view(2, 1, 1, 1, 1)  # sample 1 made brighter (or redder) as a whole
    plain = nn.GroupNorm(8, 8, affine=False)
    assert torch.allclose(plain(x), plain(shifted), atol=1e-5)  # GroupNorm cannot tell them apart

    norm = AdaptiveGroupNorm(8, cond_dim=1)
    cond = torch.tensor([[0.0], [3.0]])  # what the generator's input says about each sample
    # A new layer is a plain GroupNorm (its scale and shift start at zero)...
    assert torch.allclose(norm(shifted, cond), plain(shifted), atol=1e-6)
    # ...and a shift learned from the input gives each sample its own offset back.
    with torch.no_grad():
        norm.affine.weight[8:] = 1.0  # beta = cond for every channel
    out = norm(shifted, cond)
    assert torch.allclose(out[0], plain(x)[0], atol=1e-5)
    assert torch.allclose(out[1] - plain(x)[1], torch.full_like(out[1], 3.0), atol=1e-5)


def test_an_adaptive_generator_saves_and_loads_and_old_configs_keep_plain_group_norm(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = GANConfig(base_channels=8, noise_dim=16, generator_norm="adaptive")
    g = LatentGenerator(cfg, (4, 2, 8, 8), num_classes=3)
    with torch.no_grad():  # non-zero modulation, so a load that dropped it would show
        for m in g.modules():
            if isinstance(m, AdaptiveGroupNorm):
                m.affine.weight.normal_(0, 0.1)
    extra = {"latent_shape": [4, 2, 8, 8], "num_classes": 3}
    save_model(g, "gan", cfg.model_dump(), tmp_path / "g", extra=extra)
    loaded, _ = load_model(tmp_path / "g")
    noise, labels = torch.randn(5, 16), torch.tensor([0, 1, 2, 0, 1])
    assert torch.equal(g.eval()(noise, labels), loaded(noise, labels))

    old = cfg.model_dump()
    del old["generator_norm"]  # a generator saved before the setting existed
    rebuilt = build_model("gan", old, extra)
    assert not rebuilt.adaptive and not any(isinstance(m, AdaptiveGroupNorm) for m in rebuilt.modules())
