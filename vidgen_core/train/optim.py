"""One model's optimisation: Adam, LR schedule, gradient accumulation, clipping, loss scaling.

Torch only. :class:`Optim` bundles what a checkpoint must restore for one
model (optimizer moments, schedule position, fp16 scaler) behind one
``state_dict``, and runs the accumulate → unscale → clip → step → schedule
sequence the same way for the VAE, its discriminator, G and D.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, ContextManager, Iterable

import torch
from torch import nn

if TYPE_CHECKING:
    from vidgen_core.train.settings import FitSettings


class LRSchedule:
    """LR multiplier at a step: linear warm-up, then constant, cosine or linear decay to ``min_ratio``.

    A callable object rather than a lambda so ``LambdaLR.state_dict`` records it.
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> None:
        if kind not in ("constant", "cosine", "linear"):
            raise ValueError(f"unknown lr_schedule '{kind}', expected constant, cosine or linear")
        self.kind, self.total, self.warmup, self.min_ratio = kind, int(total_steps), int(warmup_steps), float(min_ratio)

    def __call__(self, step: int) -> float:
        # ``step`` counts optimizer steps already taken: step 0 is the first update.
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        span = max(self.total - self.warmup, 1)
        progress = min(max(step - self.warmup, 0) / span, 1.0)
        decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if self.kind == "cosine" else 1.0 - progress
        return self.min_ratio + (1.0 - self.min_ratio) * decay


class Optim:
    """Adam + schedule + clipping + scaler for one model.

    Per optimizer step: :meth:`zero_grad`, then :meth:`backward` on each of
    ``accum`` micro-batch losses (each divided by ``accum``, so the summed
    gradient is the mean over the micro-batches), then :meth:`step`.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        train_cfg: FitSettings,
        betas: tuple[float, float] = (0.9, 0.999),
        scaler: torch.amp.GradScaler | None = None,
        fused: bool = False,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        # fused Adam is one kernel per step on CUDA; foreach is the portable fast path.
        kwargs = {"fused": True} if fused else {"foreach": True}
        self.optimizer = torch.optim.Adam(self.params, lr=lr, betas=betas, **kwargs)
        schedule = LRSchedule(train_cfg.lr_schedule, train_cfg.steps, train_cfg.warmup_steps, train_cfg.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.clip = float(train_cfg.grad_clip)
        self.accum = int(train_cfg.grad_accum)
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler("cpu", enabled=False)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradient of one micro-batch's ``loss`` (scaled by 1/accum and the fp16 scale)."""
        self.scaler.scale(loss / self.accum).backward()

    def step(self) -> torch.Tensor:
        """Unscale, clip, step, advance the schedule; returns the pre-clip global grad norm (a tensor: no sync)."""
        self.scaler.unscale_(self.optimizer)
        max_norm = self.clip if self.clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.scaler.step(self.optimizer)  # skipped (fp16) when the grads hold inf/NaN
        self.scaler.update()
        self.scheduler.step()
        return grad_norm.detach()

    def scale_lr(self, factor: float) -> None:
        """Multiply the LR for the rest of the run (guardrail rollback); persists through checkpoints."""
        self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["initial_lr"] = base
        # Re-apply the schedule at the current position with the new base LRs.
        for group, base, fn in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base * fn(self.scheduler.last_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore moments, schedule position and base LRs (incl. guardrail cuts) and the scaler.

        The schedule's shape (kind, total steps, warm-up) stays the one from the
        current config, so a re-run with more steps stretches a cosine schedule.
        """
        self.optimizer.load_state_dict(state["optimizer"])
        sched = dict(state["scheduler"])
        sched["lr_lambdas"] = [None] * len(self.scheduler.lr_lambdas)  # None: keep the configured schedule
        self.scheduler.load_state_dict(sched)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def no_sync(model: nn.Module, skip: bool) -> ContextManager:
    """DDP's ``no_sync()`` when ``skip`` (accumulating micro-batches, or grads to be discarded); else a no-op."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()
