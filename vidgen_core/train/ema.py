"""Exponential moving average of a model's weights (torch only).

GAN generators are sampled from their EMA: the raw weights oscillate with the
adversarial game, their average is smoother and usually scores better
(Karras et al. 2018; Yazıcı et al. 2019). The decay ramps up as
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a short run still
averages its recent weights instead of staying near the initialisation.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from vidgen_core.train.loop import unwrap


class EMA:
    """A frozen copy of ``model`` (unwrapped) that tracks its weights; ``.module`` is the averaged model."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema = d·ema + (1 - d)·model for parameters (float buffers, e.g. latent_scale, are copied)."""
        d = self.current_decay()
        src = unwrap(model)
        ema_params = [p for p in self.module.parameters()]
        params = [p.detach() for p in src.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for e, b in zip(self.module.buffers(), src.buffers()):
            e.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"], strict=True)
        self.updates = int(state["updates"])
        self.decay = float(state.get("decay", self.decay))
