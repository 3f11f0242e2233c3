"""Each loss against a value computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from vidgen_core.models.vae import DiagonalGaussian
from vidgen_core.train.losses import (
    hinge_d_loss,
    hinge_g_loss,
    mode_seeking_penalty,
    kl_divergence,
    reconstruction_l1,
    reconstruction_l2,
)


def test_reconstruction_l1() -> None:
    recon = torch.tensor([1.0, -2.0, 0.5, 0.0]).reshape(1, 1, 1, 2, 2)
    target = torch.tensor([0.0, 0.0, 1.0, 0.0]).reshape(1, 1, 1, 2, 2)
    # |1| + |-2| + |-0.5| + 0 = 3.5 over 4 elements
    assert reconstruction_l1(recon, target).item() == pytest.approx(0.875)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_l1(recon, target.reshape(1, 1, 1, 4, 1))


def test_reconstruction_l2() -> None:
    recon = torch.tensor([1.0, -2.0, 0.5, 0.0]).reshape(1, 1, 1, 2, 2)
    target = torch.tensor([0.0, 0.0, 1.0, 0.0]).reshape(1, 1, 1, 2, 2)
    # 1 + 4 + 0.25 + 0 = 5.25 over 4 elements
    assert reconstruction_l2(recon, target).item() == pytest.approx(1.3125)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_l2(recon, target.reshape(1, 1, 1, 4, 1))


def test_kl_divergence() -> None:
    mean = torch.tensor([0.0, 1.0])
    logvar = torch.tensor([0.0, math.log(2.0)])
    # element 0: 0.5 * (0 + 1 - 1 - 0) = 0; element 1: 0.5 * (1 + 2 - 1 - ln 2) = 1 - ln(2)/2
    expected = (0.0 + (1.0 - math.log(2.0) / 2)) / 2
    assert kl_divergence(mean, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_kl_matches_posterior_kl() -> None:
    mean, logvar = torch.randn(3, 4, 2, 2, 2), torch.randn(3, 4, 2, 2, 2)
    assert torch.allclose(DiagonalGaussian(mean, logvar).kl().mean(), kl_divergence(mean, logvar))


def test_hinge_d_loss() -> None:
    real = torch.tensor([2.0, 0.5])  # relu(1 - real) = [0, 0.5] -> mean 0.25
    fake = torch.tensor([-2.0, 0.0])  # relu(1 + fake) = [0, 1] -> mean 0.5
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.75)


def test_hinge_g_loss() -> None:
    assert hinge_g_loss(torch.tensor([1.0, -3.0])).item() == pytest.approx(1.0)


def test_mode_seeking_penalty() -> None:
    noise_a, noise_b = torch.zeros(2, 4), torch.ones(2, 4)  # mean |a - b| = 1
    apart = mode_seeking_penalty(torch.zeros(2, 3), torch.full((2, 3), 0.5), noise_a, noise_b)
    assert apart.item() == pytest.approx(2.0, rel=1e-4)  # 1 / (0.5 / 1)
    collapsed = mode_seeking_penalty(torch.ones(2, 3), torch.ones(2, 3), noise_a, noise_b)
    assert collapsed.item() == pytest.approx(1e5, rel=1e-3)  # identical samples: 1 / eps
    with pytest.raises(ValueError):
        mode_seeking_penalty(torch.ones(2, 3), torch.ones(1, 3), noise_a, noise_b)
