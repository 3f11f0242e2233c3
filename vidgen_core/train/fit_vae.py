"""Framework-free VAE training loop (torch/numpy only).

The same :func:`fit_vae` runs in a unit test, a benchmark on a bare GPU box and
inside a Ray Train worker: distribution (a DDP-wrapped ``model``), logging
(``on_log``) and checkpoint persistence (``on_checkpoint``) come from outside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from vidgen_core.models.vae import VideoVAE, frames_to_video
from vidgen_core.train.checkpoint import TrainingState, capture_state, restore_state
from vidgen_core.train.losses import kl_divergence, reconstruction_l1, reconstruction_l2
from vidgen_core.train.loop import WindowMeter, next_batch, seed_for_step, split_batch

if TYPE_CHECKING:
    from vidgen_core.config import TrainConfig, VAEConfig

LogFn = Callable[[int, dict[str, float]], None]
CheckpointFn = Callable[[int, Callable[[], TrainingState]], None]
GRAD_CLIP = 1.0  # max global grad norm: one bad batch must not wreck the run


def vae_loss(
    model: nn.Module, x: torch.Tensor, kl_weight: float, recon_loss: str = "l2"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward + loss: x (B, 3, T, H, W) in [-1, 1] -> (loss, {"rec", "kl"}).

    loss = L1 or L2(recon, x) + kl_weight * KL(q(z|x) || N(0, I)).
    """
    out = model(x)
    rec_fn = reconstruction_l2 if recon_loss == "l2" else reconstruction_l1
    rec = rec_fn(out.recon, x)
    kl = kl_divergence(out.posterior.mean, out.posterior.logvar)
    return rec + kl_weight * kl, {"rec": rec.detach(), "kl": kl.detach()}


def vae_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, kl_weight: float, recon_loss: str = "l2"
) -> dict[str, torch.Tensor]:
    """One optimisation step on x (B, 3, T, H, W); returns detached loss terms and grad norm."""
    loss, terms = vae_loss(model, x, kl_weight, recon_loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    return {"loss": loss.detach(), **terms, "grad_norm": grad_norm.detach()}


def fit_vae(
    model_cfg: VAEConfig,
    train_cfg: TrainConfig,
    batches: Iterator[np.ndarray | torch.Tensor | Any],
    on_log: LogFn | None = None,
    model: nn.Module | None = None,
    *,
    device: torch.device | str = "cpu",
    state: TrainingState | None = None,
    on_checkpoint: CheckpointFn | None = None,
) -> nn.Module:
    """Train a VideoVAE for exactly ``train_cfg.steps`` steps (counting any resumed ones).

    Args:
        model_cfg: builds the model when ``model`` is None.
        train_cfg: steps, lr, kl_weight, log_every, checkpoint_every, seed.
        batches: yields uint8 clips (B, T, H, W, 3) (numpy or torch; also a
            (frames, labels) pair or a {"frames": ...} dict). Must not run dry:
            the caller cycles it.
        on_log: called as ``on_log(step, metrics)`` every ``log_every`` steps and
            at the last step; metrics are window means of loss, rec, kl,
            grad_norm, plus lr, step_time_s, clips_per_s (this worker).
        model: an existing model, possibly DDP-wrapped and already on ``device``.
        device: where batches go (and a new model).
        state: a loaded checkpoint to resume from (model + optimizer + step).
        on_checkpoint: called as ``on_checkpoint(step, state_fn)`` every
            ``checkpoint_every`` steps and at the last step; ``state_fn()``
            captures the full TrainingState (call it before returning).
    Returns:
        The trained model (as passed in: still wrapped if it was).
    """
    torch.manual_seed(train_cfg.seed)  # model init is reproducible from the config seed
    if model is None:
        model = VideoVAE(model_cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    start = restore_state(state, {"vae": model}, {"vae": optimizer}) if state is not None else 0
    last_metrics: dict[str, float] = dict(state.extra.get("metrics", {})) if state is not None else {}

    model.train()
    meter = WindowMeter()
    for step in range(start + 1, train_cfg.steps + 1):
        frames, _ = split_batch(next_batch(batches, step))
        x = frames_to_video(frames, device)
        seed_for_step(train_cfg.seed, step)
        meter.add(x.shape[0], vae_train_step(model, optimizer, x, train_cfg.kl_weight, train_cfg.recon_loss))

        last = step == train_cfg.steps
        if step % train_cfg.log_every == 0 or last:
            last_metrics = {**meter.read(), "lr": optimizer.param_groups[0]["lr"]}
            if on_log is not None:
                on_log(step, last_metrics)
        if on_checkpoint is not None and (step % train_cfg.checkpoint_every == 0 or last):
            # Bind the loop variables now: the callback may call state_fn later in this step.
            def state_fn(step: int = step, metrics: dict[str, float] = dict(last_metrics)) -> TrainingState:
                return capture_state(step, {"vae": model}, {"vae": optimizer}, extra={"metrics": metrics})

            on_checkpoint(step, state_fn)
    return model
