"""Framework-free latent-GAN training loop (torch/numpy only).

The GAN learns the distribution of a frozen VAE's latents: real samples are the
encoder's posterior means times ``latent_scale`` (1 / their std on the first
batch, averaged over ranks), stored in the generator's ``latent_scale`` buffer
so sampling can undo it. Generator and discriminator have separate, explicit
step functions and their own Adam optimizers (betas 0.0/0.99, hinge loss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

from vidgen_core.models.gan import LatentDiscriminator, LatentGenerator
from vidgen_core.models.vae import frames_to_video
from vidgen_core.train.checkpoint import TrainingState, capture_state, restore_state
from vidgen_core.train.losses import hinge_d_loss, hinge_g_loss
from vidgen_core.train.loop import WindowMeter, dist_mean, next_batch, seed_for_step, split_batch

if TYPE_CHECKING:
    from vidgen_core.config import GANConfig, TrainConfig

LogFn = Callable[[int, dict[str, float]], None]
CheckpointFn = Callable[[int, Callable[[], TrainingState]], None]
GRAD_CLIP = 1.0
BETAS = (0.0, 0.99)  # no momentum on the first moment: the usual choice for hinge/SN GANs


def _bare(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def encode_latents(vae: nn.Module, frames: Any, device: torch.device | str) -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) -> frozen VAE posterior means (B, C, T', H', W') (unscaled)."""
    return vae.encode(frames_to_video(frames, device)).mean


def _labels(labels: Any, conditional: bool, num_classes: int, device: torch.device | str) -> torch.Tensor | None:
    if not conditional:
        return None
    if labels is None:
        raise ValueError("a class-conditional GAN needs labels with every batch; set gan.conditional=false")
    y = torch.as_tensor(labels).to(device=device, dtype=torch.long).reshape(-1)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for a conditional GAN, got [{int(y.min())}, {int(y.max())}] "
            "(unlabelled clips have label -1: set gan.conditional=false)"
        )
    return y


def discriminator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    labels: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """One D update on real latents (B, C, T', H', W') (scaled) vs fresh fakes; returns detached metrics.

    Real and fake go through D in ONE forward: a DDP module must not run forward
    twice before its backward.
    """
    b = real.shape[0]
    noise = torch.randn(b, _bare(generator).noise_dim, device=real.device)
    with torch.no_grad():
        fake = generator(noise, labels)
    both_labels = torch.cat([labels, labels]) if labels is not None else None
    logits = discriminator(torch.cat([real, fake]), both_labels)
    real_logits, fake_logits = logits[:b], logits[b:]
    loss = hinge_d_loss(real_logits, fake_logits)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(discriminator.parameters(), GRAD_CLIP)
    optimizer.step()
    return {
        "loss_d": loss.detach(),
        "d_real": real_logits.detach().mean(),
        "d_fake": fake_logits.detach().mean(),
        "grad_norm_d": grad_norm.detach(),
    }


def generator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    labels: torch.Tensor | None,
    device: torch.device | str,
) -> dict[str, torch.Tensor]:
    """One G update against the current D; returns detached metrics.

    D's parameters also receive gradients here; they are discarded because the
    D step zeroes its gradients before its own backward.
    """
    noise = torch.randn(batch_size, _bare(generator).noise_dim, device=device)
    loss = hinge_g_loss(discriminator(generator(noise, labels), labels))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(generator.parameters(), GRAD_CLIP)
    optimizer.step()
    return {"loss_g": loss.detach(), "grad_norm_g": grad_norm.detach()}


def fit_gan(
    gan_cfg: GANConfig,
    train_cfg: TrainConfig,
    vae: nn.Module,
    batches: Iterator[Any],
    num_classes: int,
    on_log: LogFn | None = None,
    *,
    generator: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    device: torch.device | str = "cpu",
    state: TrainingState | None = None,
    on_checkpoint: CheckpointFn | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Train a latent GAN on a frozen VAE for exactly ``train_cfg.steps`` steps (incl. resumed ones).

    Args:
        gan_cfg: builds G and D when they are not given.
        train_cfg: steps, lr (G), lr_d (D; None = lr), log_every, checkpoint_every, seed.
        vae: the frozen VideoVAE (put in eval mode, gradients off, moved to ``device``).
        batches: yields (frames uint8 (B, T, H, W, 3), labels (B,)) pairs or
            {"frames", "label"} dicts; must not run dry (the caller cycles it).
        num_classes: label count (0 = unlabelled; then G and D are unconditional).
        on_log: ``on_log(step, metrics)`` every ``log_every`` steps and at the last:
            window means of loss (= loss_d + loss_g), loss_d, loss_g, d_real, d_fake,
            grad_norm_d, grad_norm_g, plus lr_g, lr_d, latent_scale, step_time_s, clips_per_s.
        generator, discriminator: existing modules, possibly DDP-wrapped, on ``device``.
        state: checkpoint to resume from ("generator", "discriminator" models and optimizers).
        on_checkpoint: ``on_checkpoint(step, state_fn)`` every ``checkpoint_every`` steps and at the last.
    Returns:
        (generator, discriminator) as passed in (still wrapped if they were).
    """
    torch.manual_seed(train_cfg.seed)
    vae = vae.to(device).eval().requires_grad_(False)
    first = split_batch(next_batch(batches, 1))
    first_latents = encode_latents(vae, first[0], device)
    latent_shape = tuple(first_latents.shape[1:])
    if generator is None:
        generator = LatentGenerator(gan_cfg, latent_shape, num_classes).to(device)
    if discriminator is None:
        discriminator = LatentDiscriminator(gan_cfg, latent_shape, num_classes).to(device)
    conditional = _bare(generator).conditional

    opt_g = torch.optim.Adam(generator.parameters(), lr=train_cfg.lr, betas=BETAS)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=train_cfg.lr_d or train_cfg.lr, betas=BETAS)
    models = {"generator": generator, "discriminator": discriminator}
    optimizers = {"generator": opt_g, "discriminator": opt_d}
    if state is not None:  # latent_scale comes back with the generator's buffers
        start = restore_state(state, models, optimizers)
        last_metrics: dict[str, float] = dict(state.extra.get("metrics", {}))
    else:
        start, last_metrics = 0, {}
        # Every rank must use the same scale: average the variance over ranks.
        var = dist_mean(first_latents.float().var().reshape(1))
        _bare(generator).latent_scale.fill_(float(var.clamp_min(1e-12).rsqrt()))
    scale = _bare(generator).latent_scale

    generator.train()
    discriminator.train()
    meter = WindowMeter()
    pending: tuple[Any, Any] | None = first  # the first batch is used for the first step, not wasted
    for step in range(start + 1, train_cfg.steps + 1):
        frames, labels = pending if pending is not None else split_batch(next_batch(batches, step))
        real = (first_latents if pending is not None else encode_latents(vae, frames, device)) * scale
        pending = None
        y = _labels(labels, conditional, num_classes, device)
        seed_for_step(train_cfg.seed, step)
        metrics = discriminator_step(generator, discriminator, opt_d, real, y)
        metrics.update(generator_step(generator, discriminator, opt_g, real.shape[0], y, device))
        metrics["loss"] = metrics["loss_d"] + metrics["loss_g"]
        meter.add(real.shape[0], metrics)

        last = step == train_cfg.steps
        if step % train_cfg.log_every == 0 or last:
            last_metrics = {
                **meter.read(),
                "lr_g": opt_g.param_groups[0]["lr"],
                "lr_d": opt_d.param_groups[0]["lr"],
                "latent_scale": float(scale),
            }
            if on_log is not None:
                on_log(step, last_metrics)
        if on_checkpoint is not None and (step % train_cfg.checkpoint_every == 0 or last):

            def state_fn(step: int = step, metrics: dict[str, float] = dict(last_metrics)) -> TrainingState:
                extra = {"metrics": metrics, "latent_scale": float(scale), "latent_shape": list(latent_shape)}
                return capture_state(step, models, optimizers, extra=extra)

            on_checkpoint(step, state_fn)
    return generator, discriminator


@torch.no_grad()
def sample_videos(
    generator: nn.Module,
    vae: nn.Module,
    num_samples: int,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Generate clips: noise -> G -> / latent_scale -> VAE decode -> (N, 3, T, H, W), nominally [-1, 1].

    Deterministic for a given ``seed`` (its own torch.Generator, global RNG untouched).
    For a conditional generator with ``labels=None``, classes cycle 0, 1, 2, ...
    """
    g = _bare(generator)
    noise = torch.randn(num_samples, g.noise_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    if g.conditional and labels is None:
        labels = torch.arange(num_samples) % g.num_classes
    y = labels.to(device=device, dtype=torch.long) if (g.conditional and labels is not None) else None
    was_training = g.training
    g.eval()
    latents = g.vae_latents(noise, y)
    g.train(was_training)
    return vae.decode(latents)
