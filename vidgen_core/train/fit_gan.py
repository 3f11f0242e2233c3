"""Framework-free GAN training loop (torch/numpy only): latent GAN on a frozen VAE, or pixel GAN.

Latent space (default): real samples are the frozen VAE encoder's posterior
means times ``latent_scale`` (1 / their std on the first batch, averaged over
ranks), stored in the generator's ``latent_scale`` buffer so sampling can undo
it. Pixel space: real samples are the clips in [-1, 1]; the VAE is not used.

Each step: one discriminator update then one generator update
(:mod:`vidgen_core.train.gan_steps`), each with its own Adam (betas 0.0/0.99),
LR schedule, clipping and loss scaler; then the generator's EMA. A
:class:`~vidgen_core.train.guard.DivergenceGuard` checks at every log and
checkpoint step; on divergence the run rolls back to the last good checkpoint
(in memory, identical to the last one persisted) with the LRs cut by
``rollback_lr_factor``, and reports the event through ``on_event``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple

import torch
from torch import nn

from vidgen_core.models.gan import build_discriminator, build_generator
from vidgen_core.models.vae import frames_to_video
from vidgen_core.train.checkpoint import TrainingState, capture_state, copy_state, restore_state
from vidgen_core.train.ema import EMA
from vidgen_core.train.gan_steps import PixelView, discriminator_step, generator_step
from vidgen_core.train.guard import DivergenceGuard, GANDiverged
from vidgen_core.train.latent_cache import LatentCache
from vidgen_core.train.loop import WindowMeter, dist_mean, next_batch, seed_for_step, split_batch, unwrap
from vidgen_core.train.optim import Optim
from vidgen_core.train.settings import FitSettings
from vidgen_core.train.precision import Numerics, maybe_compile, resolve_numerics

if TYPE_CHECKING:
    from vidgen_core.config import GANConfig

LogFn = Callable[[int, dict[str, float]], None]
CheckpointFn = Callable[[int, Callable[[], TrainingState]], None]
SampleFn = Callable[[int, nn.Module], None]
EventFn = Callable[[int, str, dict[str, Any]], None]
BETAS = (0.0, 0.99)  # no momentum on the first moment: the usual choice for hinge/SN GANs


class GANModels(NamedTuple):
    """What :func:`fit_gan` returns: the trained (possibly wrapped) G and D, and the generator to serve.

    ``serving`` is the EMA generator when ``ema_decay > 0``, else the bare generator.
    """

    generator: nn.Module
    discriminator: nn.Module
    serving: nn.Module


@torch.no_grad()
def encode_latents(vae: nn.Module, frames: Any, device: torch.device | str, numerics: Numerics | None = None) -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) -> frozen VAE posterior means (B, C, T', H', W') (unscaled, float32)."""
    x = frames_to_video(frames, device)
    if numerics is None:
        return vae.encode(x).mean.float()
    with numerics.autocast():
        return vae.encode(numerics.to_input(x)).mean.float()


def pixel_d_shape(gan_cfg: GANConfig, vae: nn.Module | None, latent_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The pixel D's input shape (3, T_px, H, W): what the VAE decodes from one latent time
    slice; None when there is no pixel D (pixel GAN, or ``gan.pixel_d_weight`` 0)."""
    if gan_cfg.space != "latent" or gan_cfg.pixel_d_weight <= 0 or vae is None:
        return None
    probe = next(vae.parameters())
    with torch.no_grad():
        z = torch.zeros(1, latent_shape[0], 1, *latent_shape[2:], device=probe.device, dtype=probe.dtype)
        return tuple(vae.decode(z).shape[1:])


def pixel_view(gan_cfg: GANConfig, vae: nn.Module, generator: nn.Module, numerics: Numerics) -> PixelView:
    """Decoding for the pixel D: generator-space latents (b, C, T', H', W') and a slice index t ->
    the frozen VAE's frames of latent slice t, float32 (b, 3, T_px, H, W), differentiable in the
    latents. The generator's ``latent_scale`` is read at each call (it is set after construction).

    ``gan.pixel_d_decode``: "clip" decodes all T' slices and keeps slice t's T_px frames, the frames
    a sample shows; "slice" decodes slice t alone (cheaper, but the decoder then lacks the
    neighbouring slices and renders even real latents pale).
    """
    g = unwrap(generator)
    whole_clip = getattr(gan_cfg, "pixel_d_decode", "clip") == "clip"

    def decode(latents: torch.Tensor, t: int) -> torch.Tensor:
        z = (latents if whole_clip else latents[:, :, t : t + 1]).float() / g.latent_scale
        with numerics.autocast():
            frames = vae.decode(numerics.to_input(z)).float()
        if not whole_clip:
            return frames
        k = frames.shape[2] // latents.shape[2]  # frames per latent time slice
        return frames[:, :, t * k : (t + 1) * k]

    return PixelView(decode, int(g.latent_shape[1]), gan_cfg.pixel_d_batch, gan_cfg.pixel_d_weight,
                     tuple(gan_cfg.pixel_d_augment))


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


def fit_gan(
    gan_cfg: GANConfig,
    train_cfg: FitSettings,
    vae: nn.Module | None,
    batches: Iterator[Any],
    num_classes: int,
    on_log: LogFn | None = None,
    *,
    generator: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    device: torch.device | str = "cpu",
    state: TrainingState | None = None,
    on_checkpoint: CheckpointFn | None = None,
    on_sample: SampleFn | None = None,
    on_event: EventFn | None = None,
) -> GANModels:
    """Train a GAN for exactly ``train_cfg.steps`` steps (incl. resumed ones).

    Args:
        gan_cfg: space, architecture, regularisers (spectral norm, R1), EMA, guardrail.
        train_cfg: :class:`~vidgen_core.train.settings.FitSettings`, or any object with its
            fields (the pipeline's ``TrainConfig``): steps, accumulation, lr (G) and lr_d (D; None = lr) with
            schedule, clipping, precision, log/checkpoint/sample cadence, seed.
        vae: the frozen VideoVAE (latent space; eval mode, no grads, moved to
            ``device``); None for ``space: pixel``.
        batches: yields (frames uint8 (B, T, H, W, 3), labels (B,)) pairs or
            {"frames", "label"} dicts, ``grad_accum`` per step; must not run dry.
            With ``peek()``/``state_dict()`` its position is checkpointed.
        num_classes: label count (0 = unlabelled; then G and D are unconditional).
        on_log: ``on_log(step, metrics)`` every ``log_every`` steps and at the last:
            window means of loss (= loss_d + loss_g), loss_d, loss_g, d_real, d_fake,
            grad_norm_d, grad_norm_g (+ r1), plus lr_g, lr_d, latent_scale,
            rollbacks, step_time_s, clips_per_s.
        generator, discriminator: existing modules, possibly DDP-wrapped, on ``device``.
        state: checkpoint to resume from.
        on_checkpoint: ``on_checkpoint(step, state_fn)`` every ``checkpoint_every`` steps and at the last.
        on_sample: ``on_sample(step, serving_generator)`` every ``sample_every`` steps (if > 0).
        on_event: ``on_event(step, "guard_rollback", info)`` when the guardrail rolls back.
    Returns:
        :class:`GANModels` (generator, discriminator as passed in; serving generator).
    Raises:
        GANDiverged: still diverging after ``gan_cfg.max_rollbacks`` rollbacks.
    """
    train_cfg = FitSettings.of(train_cfg)
    numerics = resolve_numerics(train_cfg, device)
    dev = numerics.device
    torch.manual_seed(train_cfg.seed)
    pixel = gan_cfg.space == "pixel"
    if not pixel:
        if vae is None:
            raise ValueError("a latent GAN needs the frozen VAE; pass vae= (or set gan.space=pixel)")
        vae = numerics.prepare(vae).eval().requires_grad_(False)

    # The encoder is frozen and deterministic: each distinct training clip is encoded once.
    latents = None if pixel else LatentCache(lambda clips: encode_latents(vae, clips, dev, numerics))

    def real_samples(frames: Any) -> torch.Tensor:
        if latents is None:
            return numerics.to_input(frames_to_video(frames, dev))
        return latents(frames)

    if hasattr(batches, "peek"):  # look without consuming: the position stays checkpointable
        first = split_batch(batches.peek())
    else:
        first = split_batch(next_batch(batches, 1))
        batches = itertools.chain([first], batches)
    first_real = real_samples(first[0])
    shape = tuple(first_real.shape[1:])
    if generator is None:
        generator = maybe_compile(numerics.prepare(build_generator(gan_cfg, shape, num_classes)), train_cfg.compile)
    if discriminator is None:
        d = build_discriminator(gan_cfg, shape, num_classes, pixel_d_shape(gan_cfg, vae, shape))
        discriminator = maybe_compile(numerics.prepare(d), train_cfg.compile)
    g_bare = unwrap(generator)
    # The pixel D needs a discriminator built with it (build_discriminator with pixel_d_shape).
    pixels = pixel_view(gan_cfg, vae, generator, numerics) if hasattr(unwrap(discriminator), "pixel") else None
    pixel_clips = pixels is not None and gan_cfg.pixel_d_real == "clips"
    conditional = g_bare.conditional

    fused = dev.type == "cuda"
    opt_g = Optim(generator.parameters(), train_cfg.lr, train_cfg, BETAS, numerics.grad_scaler(), fused)
    opt_d = Optim(discriminator.parameters(), train_cfg.lr_d or train_cfg.lr, train_cfg, BETAS, numerics.grad_scaler(), fused)
    models = {"generator": generator, "discriminator": discriminator}
    optims = {"generator": opt_g, "discriminator": opt_d}
    if state is None and not pixel:
        # Every rank must use the same scale: average the variance over ranks.
        var = dist_mean(first_real.float().var().reshape(1))
        g_bare.latent_scale.fill_(float(var.clamp_min(1e-12).rsqrt()))
    ema = EMA(generator, gan_cfg.ema_decay) if gan_cfg.ema_decay > 0 else None
    averages = {"generator": ema} if ema is not None else {}
    if state is not None:  # latent_scale comes back with the generator's buffers
        start = restore_state(state, models, optims, averages=averages, data=batches)
        last_metrics: dict[str, float] = dict(state.extra.get("metrics", {}))
        rollbacks = int(state.extra.get("rollbacks", 0))
    else:
        start, last_metrics, rollbacks = 0, {}, 0
    scale = g_bare.latent_scale
    serving = ema.module if ema is not None else g_bare

    def state_fn(step: int, metrics: dict[str, float]) -> TrainingState:
        extra = {"metrics": metrics, "latent_scale": float(scale), "latent_shape": list(shape), "rollbacks": rollbacks}
        return capture_state(step, models, optims, extra=extra, averages=averages, data=batches)

    guard = DivergenceGuard(gan_cfg.divergence_logit_max) if gan_cfg.guard else None
    last_good = copy_state(state_fn(start, last_metrics)) if guard is not None else None
    generator.train()
    discriminator.train()
    meter = WindowMeter()
    step = start
    while step < train_cfg.steps:
        step += 1
        # A rolled-back run must not redraw the noise that led it astray.
        seed_for_step(train_cfg.seed + 104_729 * rollbacks, step)
        reals, ys, videos = [], [], []
        for _ in range(train_cfg.grad_accum):
            frames, labels = split_batch(next_batch(batches, step))
            real = real_samples(frames)
            reals.append(real if pixel else numerics.to_input(real * scale))
            ys.append(_labels(labels, conditional, num_classes, dev))
            if pixel_clips:
                videos.append(frames_to_video(frames, dev))
        class_loss = gan_cfg.class_loss
        metrics = discriminator_step(
            generator, discriminator, opt_d, reals, ys, numerics, gan_cfg.r1_gamma, class_loss, pixels,
            videos if pixel_clips else None,
        )
        metrics.update(generator_step(
            generator, discriminator, opt_g, reals[0].shape[0], ys, numerics, gan_cfg.mode_seeking, class_loss, pixels
        ))
        metrics["loss"] = metrics["loss_d"] + metrics["loss_g"]
        if ema is not None:
            ema.update(generator)
        if guard is not None:
            guard.observe(metrics)
        meter.add(sum(r.shape[0] for r in reals), metrics)

        last = step == train_cfg.steps
        log_now = step % train_cfg.log_every == 0 or last
        checkpoint_now = step % train_cfg.checkpoint_every == 0 or last
        if guard is not None and (log_now or checkpoint_now) and guard.diverged():
            rollbacks += 1
            window = meter.read()
            if rollbacks > gan_cfg.max_rollbacks:
                raise GANDiverged(
                    f"the GAN diverged at step {step} after {rollbacks - 1} rollback(s) "
                    f"(loss_d={window.get('loss_d')}, d_real={window.get('d_real')}, d_fake={window.get('d_fake')}); "
                    "lower train_gan.lr / lr_d or raise gan.max_rollbacks"
                )
            restore_state(last_good, models, optims, averages=averages, rng=True)
            for opt in optims.values():
                opt.scale_lr(gan_cfg.rollback_lr_factor)
            info = {
                "from_step": step, "to_step": last_good.step, "rollbacks": rollbacks,
                "lr_g": opt_g.lr, "lr_d": opt_d.lr, "window": window,
            }
            step = last_good.step
            last_good = copy_state(state_fn(step, last_metrics))  # with the lower LRs
            if on_event is not None:
                on_event(info["from_step"], "guard_rollback", info)
            continue
        if log_now:
            last_metrics = {
                **meter.read(), "lr_g": opt_g.lr, "lr_d": opt_d.lr, "latent_scale": float(scale), "rollbacks": rollbacks,
            }
            if on_log is not None:
                on_log(step, last_metrics)
        if on_sample is not None and train_cfg.sample_every and step % train_cfg.sample_every == 0:
            on_sample(step, serving)
        if checkpoint_now:
            if guard is not None:
                last_good = copy_state(state_fn(step, last_metrics))
            if on_checkpoint is not None:
                on_checkpoint(step, lambda step=step, metrics=dict(last_metrics): state_fn(step, metrics))
    return GANModels(generator, discriminator, serving)


@torch.no_grad()
def sample_videos(
    generator: nn.Module,
    vae: nn.Module | None,
    num_samples: int,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Generate clips (N, 3, T, H, W), nominally in [-1, 1].

    Latent space: noise -> G -> / latent_scale -> VAE decode. Pixel space: G's
    output as is (``vae`` unused). Deterministic for a given ``seed`` (its own
    torch.Generator, global RNG untouched). For a conditional generator with
    ``labels=None``, classes cycle 0, 1, 2, ...
    """
    g = unwrap(generator)
    noise = torch.randn(num_samples, g.noise_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    if g.conditional and labels is None:
        labels = torch.arange(num_samples) % g.num_classes
    y = labels.to(device=device, dtype=torch.long) if (g.conditional and labels is not None) else None
    was_training = g.training
    g.eval()
    try:
        if getattr(g, "space", "latent") == "pixel":
            return g(noise, y).float()
        return vae.decode(g.vae_latents(noise, y)).float()
    finally:
        g.train(was_training)
