"""GAN divergence detection (torch only).

A GAN that diverges rarely recovers: losses turn NaN/inf, or the discriminator
wins outright and its logits run off to huge magnitudes while the generator's
gradient vanishes. :class:`DivergenceGuard` watches every step without a
host sync (flags stay on the device) and answers at log/checkpoint steps, the
same answer on every rank; ``fit_gan`` then rolls back to the last good
checkpoint with lower learning rates.
"""

from __future__ import annotations

import torch

from vidgen_core.train.loop import dist_any


class GANDiverged(RuntimeError):
    """The GAN kept diverging after ``max_rollbacks`` rollbacks (or before any good state existed)."""


class DivergenceGuard:
    """Flags non-finite losses or mean |D logits| above ``logit_max`` since the last :meth:`diverged`."""

    def __init__(self, logit_max: float) -> None:
        self.logit_max = float(logit_max)
        self._bad: torch.Tensor | None = None

    def observe(self, metrics: dict[str, torch.Tensor]) -> None:
        """Accumulate this step's verdict from loss_d, loss_g, d_real, d_fake (0-d tensors)."""
        losses = torch.stack([metrics["loss_d"].float(), metrics["loss_g"].float()])
        logits = torch.stack([metrics["d_real"].float(), metrics["d_fake"].float()])
        bad = ~torch.isfinite(losses).all() | ~torch.isfinite(logits).all() | (logits.abs() > self.logit_max).any()
        self._bad = bad if self._bad is None else self._bad | bad

    def diverged(self) -> bool:
        """Whether any rank saw a bad step since the last call (one all-reduce); resets the flag."""
        bad, self._bad = self._bad, None
        if bad is None:
            bad = torch.zeros((), dtype=torch.bool)
        return dist_any(bad)
