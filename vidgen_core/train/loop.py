"""Small helpers shared by the framework-free training loops (torch only)."""

from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist


def dist_rank() -> int:
    """This process's rank in the default torch.distributed group (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def dist_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over all ranks (identity when not distributed), so ranks agree."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def seed_for_step(seed: int, step: int) -> None:
    """Seed torch before each step for the step's own randomness (VAE sampling, GAN noise).

    Seeding per step makes a resumed run draw exactly the noise an uninterrupted
    run would have; offsetting by rank gives each DDP worker its own noise.
    """
    torch.manual_seed(seed + 1_000_003 * dist_rank() + 7919 * step)


def next_batch(batches: Iterator[Any], step: int) -> Any:
    """The next item of ``batches``; a clear error if the iterator ran dry (it must be cycled)."""
    try:
        return next(batches)
    except StopIteration:
        raise ValueError(
            f"the batch iterator ended before step {step}: pass an infinite (cycled) iterator "
            "that yields at least train.steps batches"
        ) from None


def split_batch(batch: Any) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor | None]:
    """(frames, labels or None) from a frames array, a (frames, labels) pair or a {"frames", "label"} dict."""
    if isinstance(batch, dict):
        return batch["frames"], batch.get("label")
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


class WindowMeter:
    """Averages per-step scalars over a logging window, plus throughput.

    Values stay tensors until :meth:`read` so a GPU step never waits on ``.item()``;
    the one sync per window also makes the measured step time honest.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._steps = 0
        self._clips = 0
        self._t0 = time.perf_counter()

    def add(self, batch_size: int, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            v = v.detach().float()
            self._sums[k] = self._sums[k] + v if k in self._sums else v
        self._steps += 1
        self._clips += batch_size

    def read(self) -> dict[str, float]:
        """Window means plus ``step_time_s`` and ``clips_per_s`` (this worker); then resets."""
        out = {k: float(v) / max(self._steps, 1) for k, v in self._sums.items()}  # float() syncs
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        out["step_time_s"] = elapsed / max(self._steps, 1)
        out["clips_per_s"] = self._clips / elapsed
        self.reset()
        return out
