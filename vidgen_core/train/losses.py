"""Loss terms as small pure functions (torch only), each tested against hand values."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every element: recon, target (B, 3, T, H, W) -> scalar.

    L1 rather than L2: it blurs less and is robust to the occasional hard edge.
    """
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
    return (recon - target).abs().mean()


def reconstruction_l2(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element: recon, target (B, 3, T, H, W) -> scalar.

    The loss PSNR measures; converges faster than L1 on flat synthetic scenes.
    """
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
    return (recon - target).pow(2).mean()


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), averaged over batch and latent elements -> scalar.

    Per element: 0.5 * (mean² + exp(logvar) - 1 - logvar). Averaging over elements
    (like the L1 term) keeps ``kl_weight`` independent of clip and latent size.
    """
    return (0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)).mean()


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))); logits (B,) -> scalar."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: -mean(D(fake)); logits (B,) -> scalar."""
    return -fake_logits.mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 gradient penalty (Mescheder et al. 2018): mean over samples of ||∇ₓ D(x)||² on real x -> scalar.

    ``real`` (B, ...) must require grad and ``real_logits`` (B,) come from it. The
    graph is kept (create_graph) so the penalty itself trains D. The caller
    weights it by gamma / 2.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def mode_seeking_penalty(
    samples_a: torch.Tensor, samples_b: torch.Tensor, noise_a: torch.Tensor, noise_b: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Mode-seeking term (Mao et al. 2019, MSGAN): 1 / (mean|G(a) - G(b)| / mean|a - b|) -> scalar.

    samples_* (h, ...) are generated from noise_* (h, noise_dim) under the same labels. A
    generator that ignores its noise (mode collapse: every sample of a class alike) makes the
    ratio small and this term large; minimising it keeps different noise giving different samples.
    """
    if samples_a.shape != samples_b.shape or noise_a.shape != noise_b.shape:
        raise ValueError("mode_seeking_penalty needs two equally shaped sample batches and noise batches")
    ratio = (samples_a - samples_b).abs().mean() / (noise_a - noise_b).abs().mean()
    return 1.0 / (ratio + eps)
