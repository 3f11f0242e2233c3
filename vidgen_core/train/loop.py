"""Small helpers shared by the framework-free training loops (torch only)."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from vidgen_core.models.io import unwrap  # noqa: F401  (one definition, re-exported for train/)


def dist_rank() -> int:
    """This process's rank in the default torch.distributed group (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def dist_world_size() -> int:
    """Ranks in the default torch.distributed group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def dist_any(flag: torch.Tensor) -> bool:
    """True on every rank when ``flag`` (a bool/0-1 tensor) is set on any rank; one sync."""
    value = flag.detach().float().reshape(1)
    if dist_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


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


def batch_noise(
    per_sample: tuple[int, ...], local_batch: int, seed: int, step: int, micro: int, accum: int,
    device: torch.device | str,
) -> torch.Tensor:
    """Standard normal noise (local_batch, *per_sample) for this rank's slice of the step's global batch.

    The step's global batch is ``accum × world × local_batch`` samples, micro-batch
    major then rank: micro-batch ``m`` of rank ``r`` holds global samples
    ``(m·world + r)·b ... + b``. Their noise depends on (seed, step, global index)
    only, so 2 workers × b, 1 worker × 2b and 1 worker × b × 2 accumulation
    steps all draw the same noise for the same sample (the DDP and
    accumulation equivalence tests rely on it). Drawing the whole global
    batch's noise costs a latent-sized randn per sample: negligible.
    """
    world, rank = dist_world_size(), dist_rank()
    g = torch.Generator(device=device).manual_seed((seed * 1_000_003 + step * 7919) % (2**63))
    full = torch.randn((accum * world * local_batch, *per_sample), generator=g, device=device)
    start = (micro * world + rank) * local_batch
    return full[start : start + local_batch]


class EpochBatches:
    """Endless batches from a re-iterable source, epoch after epoch, with a resumable position.

    ``make_epoch(epoch)`` returns one epoch's batches. The position is
    ``{"epoch": e, "batch": i}`` (i batches of epoch e consumed); a checkpoint
    stores it and :meth:`load_state_dict` continues there by skipping i batches
    of epoch e. Exact when the source's order is deterministic; with a streaming
    split whose order varies, it still avoids replaying an epoch's first part.
    Every epoch must yield at least one batch (``empty_error`` otherwise).
    """

    def __init__(self, make_epoch: Callable[[int], Iterable[Any]], empty_error: Callable[[], Exception] | None = None) -> None:
        self._make_epoch = make_epoch
        self._empty_error = empty_error or (lambda: ValueError("an epoch of the training data yielded no batch"))
        self.epoch, self.batch = 0, 0
        self._it: Iterator[Any] | None = None
        self._peeked: list[Any] = []

    def __iter__(self) -> EpochBatches:
        return self

    def _pull(self) -> Any:
        while True:
            if self._it is None:
                self._it = iter(self._make_epoch(self.epoch))
                for _ in range(self.batch):  # fast-forward a resumed epoch
                    if next(self._it, None) is None:
                        break
            item = next(self._it, None)
            if item is not None:
                return item
            if self.batch == 0:
                raise self._empty_error()
            self._it, self.epoch, self.batch = None, self.epoch + 1, 0

    def __next__(self) -> Any:
        item = self._peeked.pop() if self._peeked else self._pull()
        self.batch += 1
        return item

    def peek(self) -> Any:
        """The next batch, without consuming it (the position does not move)."""
        if not self._peeked:
            self._peeked.append(self._pull())
        return self._peeked[0]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if (epoch, batch) == (self.epoch, self.batch):
            return  # already there: keep the open epoch (restarting it could desync a streaming split)
        self.epoch, self.batch = epoch, batch
        self._it, self._peeked = None, []


def shuffled_batches(
    frames: torch.Tensor, labels: torch.Tensor | None, batch_size: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """One epoch of (frames (b, ...), labels (b,) | None) batches in a seeded random order; drops the remainder.

    The same seed gives the same batches on every process, so DDP ranks that
    each hold the whole set can shuffle alike and slice their share.
    """
    order = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[i : i + batch_size]
        yield frames[idx], (labels[idx] if labels is not None else None)


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
        self._counts: dict[str, int] = {}
        self._steps = 0
        self._clips = 0
        self._t0 = time.perf_counter()

    def add(self, batch_size: int, values: dict[str, torch.Tensor]) -> None:
        # Per-key counts: a term that starts mid-window (e.g. the VAE's adversarial loss)
        # is averaged over the steps that had it.
        for k, v in values.items():
            v = v.detach().float()
            self._sums[k] = self._sums[k] + v if k in self._sums else v
            self._counts[k] = self._counts.get(k, 0) + 1
        self._steps += 1
        self._clips += batch_size

    def read(self) -> dict[str, float]:
        """Window means plus ``step_time_s`` and ``clips_per_s`` (this worker); then resets."""
        out = {k: float(v) / self._counts[k] for k, v in self._sums.items()}  # float() syncs
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        out["step_time_s"] = elapsed / max(self._steps, 1)
        out["clips_per_s"] = self._clips / elapsed
        self.reset()
        return out
