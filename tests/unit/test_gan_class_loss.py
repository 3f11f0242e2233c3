"""The GAN's auxiliary class loss (AC-GAN): D's class head learns classes from real samples, G learns to hit them."""

from __future__ import annotations

import pytest
import torch

from vidgen_core.config import GANConfig, TrainConfig
from vidgen_core.models.gan import LatentDiscriminator, LatentGenerator
from vidgen_core.train.gan_steps import discriminator_step, generator_step
from vidgen_core.train.optim import Optim
from vidgen_core.train.precision import resolve_numerics

SHAPE = (4, 2, 4, 4)
CFG = GANConfig(noise_dim=8, base_channels=8, class_loss=1.0)


def _reals(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes told apart only by the sign of the latent: (n, *SHAPE), labels (n,)."""
    labels = torch.arange(n) % 2
    z = torch.randn(n, *SHAPE) * 0.3 + (labels * 2.0 - 1.0)[:, None, None, None, None]
    return z, labels


def _head_accuracy(d: LatentDiscriminator, z: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        _, class_logits = d(z, labels, with_class=True)
    return float((class_logits.argmax(1) == labels).float().mean())


def test_the_class_head_is_there_only_when_asked_for() -> None:
    d = LatentDiscriminator(CFG, SHAPE, 3)
    logits, class_logits = d(torch.randn(5, *SHAPE), torch.tensor([0, 1, 2, 0, 1]), with_class=True)
    assert logits.shape == (5,) and class_logits.shape == (5, 3)
    for cfg, classes in ((GANConfig(noise_dim=8, base_channels=8, class_loss=0.0), 3), (CFG, 0)):
        d = LatentDiscriminator(cfg, SHAPE, classes)
        assert d.class_head is None
        with pytest.raises(ValueError, match="class head"):
            d(torch.randn(2, *SHAPE), torch.tensor([0, 1]) if classes else None, with_class=True)


def test_d_learns_the_classes_of_real_samples_and_g_learns_to_hit_them() -> None:
    torch.manual_seed(0)
    g, d = LatentGenerator(CFG, SHAPE, 2), LatentDiscriminator(CFG, SHAPE, 2)
    train = TrainConfig(lr=2e-3, lr_d=2e-3)
    numerics = resolve_numerics(train, "cpu")
    opt_g = Optim(g.parameters(), 2e-3, train, (0.0, 0.99), numerics.grad_scaler(), False)
    opt_d = Optim(d.parameters(), 2e-3, train, (0.0, 0.99), numerics.grad_scaler(), False)
    test_z, test_y = _reals(64)
    before = _head_accuracy(d, test_z, test_y)
    first_g = last_g = None
    for step in range(60):
        z, y = _reals(16)
        out_d = discriminator_step(g, d, opt_d, [z], [y], numerics, class_loss=1.0)
        out_g = generator_step(g, d, opt_g, 16, [y], numerics, class_loss=1.0)
        assert torch.isfinite(out_d["class_d"]) and torch.isfinite(out_g["class_g"])
        first_g = float(out_g["class_g"]) if first_g is None else first_g
        last_g = float(out_g["class_g"])
    assert before < 0.9 and _head_accuracy(d, test_z, test_y) == 1.0
    # G's samples move to the side of the class they are asked for.
    assert last_g < 0.5 * first_g, (first_g, last_g)
    with torch.no_grad():
        y = torch.arange(64) % 2
        mean_by_class = [float(g(torch.randn(64, 8), y)[y == c].mean()) for c in (0, 1)]
    assert mean_by_class[0] < mean_by_class[1], mean_by_class


def test_without_class_loss_the_steps_report_no_class_terms() -> None:
    cfg = GANConfig(noise_dim=8, base_channels=8, class_loss=0.0)
    g, d = LatentGenerator(cfg, SHAPE, 2), LatentDiscriminator(cfg, SHAPE, 2)
    train = TrainConfig()
    numerics = resolve_numerics(train, "cpu")
    opt_g = Optim(g.parameters(), 1e-3, train, (0.0, 0.99), numerics.grad_scaler(), False)
    opt_d = Optim(d.parameters(), 1e-3, train, (0.0, 0.99), numerics.grad_scaler(), False)
    z, y = _reals(8)
    assert "class_d" not in discriminator_step(g, d, opt_d, [z], [y], numerics)
    assert "class_g" not in generator_step(g, d, opt_g, 8, [y], numerics)
