"""Framework-free VAE training loop (torch/numpy only).

The same :func:`fit_vae` runs in a unit test, a benchmark on a bare GPU box and
inside a Ray Train worker: distribution (DDP-wrapped ``model``/``disc``),
logging (``on_log``), samples (``on_sample``) and checkpoint persistence
(``on_checkpoint``) come from outside.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` clips:

1. VAE ("generator") step: reconstruction + KL (+ adversarial term once the
   patch discriminator is on), gradients accumulated over the micro-batches
   (DDP syncs only on the last), clipped, Adam step, LR schedule.
2. Discriminator step (``adv_weight > 0`` and ``step > adv_start_step``): hinge
   loss on real clips vs the step's reconstructions (detached), own Adam + schedule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from vidgen_core.models.patch_disc import PatchDiscriminator3D
from vidgen_core.models.vae import VideoVAE, frames_to_video
from vidgen_core.train.augment import augment_batch
from vidgen_core.train.checkpoint import TrainingState, capture_state, restore_state
from vidgen_core.train.losses import hinge_d_loss, hinge_g_loss, kl_divergence, reconstruction_l1, reconstruction_l2
from vidgen_core.train.loop import WindowMeter, batch_noise, next_batch, seed_for_step, split_batch, unwrap
from vidgen_core.train.optim import Optim, no_sync
from vidgen_core.train.settings import FitSettings
from vidgen_core.train.precision import Numerics, maybe_compile, resolve_numerics

if TYPE_CHECKING:
    from vidgen_core.config import VAEConfig

LogFn = Callable[[int, dict[str, float]], None]
CheckpointFn = Callable[[int, Callable[[], TrainingState]], None]
SampleFn = Callable[[int, nn.Module], None]
DISC_BETAS = (0.5, 0.9)  # the taming / SD-VAE discriminator setting


def vae_loss(
    model: nn.Module,
    x: torch.Tensor,
    kl_weight: float,
    recon_loss: str = "l2",
    *,
    noise: torch.Tensor | None = None,
    disc: nn.Module | None = None,
    adv_weight: float = 0.0,
    numerics: Numerics | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Forward + loss on x (B, 3, T, H, W) in [-1, 1] -> (loss, detached terms, recon (B, 3, T, H, W)).

    loss = L1|L2(B(recon), B(x)) + kl_weight · KL(q(z|x) || N(0, I)) [+ adv_weight · hinge_g(D(recon))],
    with B the model's loss space (``VideoVAE.to_loss_space``: the scaled brightness/colour basis).
    Every term is a mean over samples of per-sample means, so averaging DDP
    gradients over equal local batches equals the gradient on the global batch.
    Loss terms are computed in float32 even under autocast.
    """
    ctx = numerics.autocast() if numerics is not None else torch.autocast(x.device.type, enabled=False)
    with ctx:
        out = model(x, noise=noise)
        adv_logits = disc(out.recon) if disc is not None else None
    rec_fn = reconstruction_l2 if recon_loss == "l2" else reconstruction_l1
    # Scored in the VAE's brightness/colour basis, where colour errors weigh as much as brightness.
    to_space = getattr(unwrap(model), "to_loss_space", lambda v: v)
    rec = rec_fn(to_space(out.recon.float()), to_space(x.float()))
    kl = kl_divergence(out.posterior.mean.float(), out.posterior.logvar.float())
    loss = rec + kl_weight * kl
    terms = {"rec": rec.detach(), "kl": kl.detach()}
    if adv_logits is not None:
        adv = hinge_g_loss(adv_logits.float().flatten())
        loss = loss + adv_weight * adv
        terms["adv_g"] = adv.detach()
    return loss, terms, out.recon


def vae_generator_step(
    model: nn.Module,
    optim: Optim,
    xs: list[torch.Tensor],
    noises: list[torch.Tensor | None],
    train_cfg: FitSettings,
    numerics: Numerics,
    disc: nn.Module | None = None,
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """One VAE optimizer step over micro-batches ``xs`` (each (b, 3, T, H, W)); returns (metrics, detached recons).

    With ``disc`` the adversarial term is added; D's gradients from this step are
    discarded (its own step zeroes them first), so D skips DDP's all-reduce here.
    """
    optim.zero_grad()
    totals: dict[str, torch.Tensor] = {}
    recons = []
    for i, (x, noise) in enumerate(zip(xs, noises)):
        last = i == len(xs) - 1
        with no_sync(model, not last), no_sync(disc, disc is not None):
            loss, terms, recon = vae_loss(
                model, x, train_cfg.kl_weight, train_cfg.recon_loss,
                noise=noise, disc=disc, adv_weight=train_cfg.adv_weight, numerics=numerics,
            )
            optim.backward(loss)
        recons.append(recon.detach())
        for k, v in {"loss": loss.detach(), **terms}.items():
            totals[k] = totals.get(k, 0.0) + v / len(xs)
    totals["grad_norm"] = optim.step()
    return totals, recons


def vae_discriminator_step(
    disc: nn.Module, optim: Optim, xs: list[torch.Tensor], recons: list[torch.Tensor], numerics: Numerics
) -> dict[str, torch.Tensor]:
    """One patch-discriminator step: hinge loss on real ``xs`` vs ``recons`` (one forward per micro-batch)."""
    optim.zero_grad()
    out: dict[str, torch.Tensor] = {}
    for i, (x, recon) in enumerate(zip(xs, recons)):
        b = x.shape[0]
        with no_sync(disc, i < len(xs) - 1):
            with numerics.autocast():  # real and fake in ONE forward: DDP allows one forward per backward
                logits = disc(torch.cat([x, recon])).float().flatten(1).mean(1)
            loss = hinge_d_loss(logits[:b], logits[b:])
            optim.backward(loss)
        for k, v in {"loss_d": loss, "d_real": logits[:b].mean(), "d_fake": logits[b:].mean()}.items():
            out[k] = out.get(k, 0.0) + v.detach() / len(xs)
    out["grad_norm_d"] = optim.step()
    return out


def fit_vae(
    model_cfg: VAEConfig,
    train_cfg: FitSettings,
    batches: Iterator[np.ndarray | torch.Tensor | Any],
    on_log: LogFn | None = None,
    model: nn.Module | None = None,
    *,
    device: torch.device | str = "cpu",
    state: TrainingState | None = None,
    on_checkpoint: CheckpointFn | None = None,
    on_sample: SampleFn | None = None,
    disc: nn.Module | None = None,
) -> nn.Module:
    """Train a VideoVAE for exactly ``train_cfg.steps`` optimizer steps (counting any resumed ones).

    Args:
        model_cfg: builds the model when ``model`` is None.
        train_cfg: :class:`~vidgen_core.train.settings.FitSettings`, or any object with its
            fields (the pipeline's ``VAETrainConfig``): steps, accumulation, lr + schedule,
            clipping, precision, kl_weight, recon_loss, adversarial term, cadence, seed.
        batches: yields uint8 clips (B, T, H, W, 3) (numpy or torch; also a
            (frames, labels) pair or a {"frames": ...} dict), ``grad_accum`` per
            step. Must not run dry: the caller cycles it. With ``state_dict()`` /
            ``load_state_dict()`` (e.g. :class:`~vidgen_core.train.loop.EpochBatches`)
            its position is checkpointed and restored.
        on_log: ``on_log(step, metrics)`` every ``log_every`` steps and at the last;
            window means of loss, rec, kl, grad_norm (+ adv_g, loss_d, d_real,
            d_fake, grad_norm_d with the adversarial term), plus lr,
            step_time_s, clips_per_s (this worker).
        model: an existing model, possibly DDP-wrapped, already on ``device`` in
            the run's memory format (the Ray adapter prepares it). None: built,
            prepared and (``compile``) compiled here.
        device: where batches go (and a new model).
        state: a loaded checkpoint to resume from.
        on_checkpoint: ``on_checkpoint(step, state_fn)`` every ``checkpoint_every``
            steps and at the last; ``state_fn()`` captures the full TrainingState.
        on_sample: ``on_sample(step, bare_vae)`` every ``sample_every`` steps (if > 0).
        disc: the patch discriminator for ``adv_weight > 0`` (possibly DDP-wrapped);
            built here when needed and not given.
    Returns:
        The trained model (as passed in: still wrapped if it was).
    """
    train_cfg = FitSettings.of(train_cfg)
    numerics = resolve_numerics(train_cfg, device)
    torch.manual_seed(train_cfg.seed)  # model init is reproducible from the config seed
    if model is None:
        model = maybe_compile(numerics.prepare(VideoVAE(model_cfg)), train_cfg.compile)
    if train_cfg.adv_weight > 0 and disc is None:
        disc = maybe_compile(numerics.prepare(PatchDiscriminator3D(train_cfg.adv_disc_channels)), train_cfg.compile)
    fused = numerics.device.type == "cuda"
    optim = Optim(model.parameters(), train_cfg.lr, train_cfg, scaler=numerics.grad_scaler(), fused=fused)
    models: dict[str, nn.Module] = {"vae": model}
    optims: dict[str, Optim] = {"vae": optim}
    if disc is not None:
        models["vae_disc"] = disc
        optims["vae_disc"] = Optim(
            disc.parameters(), train_cfg.lr_d or train_cfg.lr, train_cfg, DISC_BETAS, numerics.grad_scaler(), fused
        )
    start = 0
    if state is not None:
        # A run resumed with the adversarial term newly switched on starts a fresh discriminator.
        keep = [n for n in models if n != "vae_disc" or "vae_disc" in state.models]
        start = restore_state(state, {n: models[n] for n in keep}, {n: optims[n] for n in keep}, data=batches)
    last_metrics: dict[str, float] = dict(state.extra.get("metrics", {})) if state is not None else {}

    bare = unwrap(model)
    model.train()
    if disc is not None:
        disc.train()
    meter = WindowMeter()
    for step in range(start + 1, train_cfg.steps + 1):
        seed_for_step(train_cfg.seed, step)
        xs, noises = [], []
        for micro in range(train_cfg.grad_accum):
            frames, _ = split_batch(next_batch(batches, step))
            x = frames_to_video(frames, numerics.device)
            x = numerics.to_input(augment_batch(x, train_cfg.augment, train_cfg.seed, step, micro, train_cfg.grad_accum))
            xs.append(x)
            dims = bare.latent_dims(*x.shape[2:])
            noises.append(batch_noise(dims, x.shape[0], train_cfg.seed, step, micro, train_cfg.grad_accum, x.device))
        adv_on = disc is not None and step > train_cfg.adv_start_step
        metrics, recons = vae_generator_step(model, optim, xs, noises, train_cfg, numerics, disc if adv_on else None)
        if adv_on:
            metrics.update(vae_discriminator_step(disc, optims["vae_disc"], xs, recons, numerics))
        meter.add(sum(x.shape[0] for x in xs), metrics)

        last = step == train_cfg.steps
        if step % train_cfg.log_every == 0 or last:
            last_metrics = {**meter.read(), "lr": optim.lr}
            if on_log is not None:
                on_log(step, last_metrics)
        if on_sample is not None and train_cfg.sample_every and step % train_cfg.sample_every == 0:
            on_sample(step, bare)
        if on_checkpoint is not None and (step % train_cfg.checkpoint_every == 0 or last):
            # Bind the loop variables now: the callback may call state_fn later in this step.
            def state_fn(step: int = step, metrics: dict[str, float] = dict(last_metrics)) -> TrainingState:
                return capture_state(step, models, optims, extra={"metrics": metrics}, data=batches)

            on_checkpoint(step, state_fn)
    return model
