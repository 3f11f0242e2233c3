"""Ray Train, worker side: where a worker is, and its batches.

:func:`shard_batches` gives an :class:`~vidgen_core.train.loop.EpochBatches`
with the same number of full batches on every rank, so DDP never waits on a
short last batch. Driver side: :mod:`vidgen_core.train.ray_driver`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from vidgen_core.config import TrainConfig
from vidgen_core.errors import UserError
from vidgen_core.train import allocator
from vidgen_core.train.loop import EpochBatches, shuffled_batches


PREVIEW_CLIPS = 4  # clips in the reconstruction / sample video


@dataclasses.dataclass
class WorkerContext:
    """Who and where this training worker is."""

    rank: int
    world: int
    device: torch.device


def worker_context(torch_threads: int | None = None, keep_freed_memory: bool = False) -> WorkerContext:
    """This worker's rank, world size and device; sets torch's thread count when ``torch_threads`` is given
    (otherwise torch keeps the OMP_NUM_THREADS Ray derives from the worker's CPUs), and makes its
    malloc keep freed memory for reuse when ``keep_freed_memory`` (:mod:`vidgen_core.train.allocator`)."""
    import ray.train
    import ray.train.torch

    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    if keep_freed_memory:
        allocator.keep_freed_memory()  # a Train worker is a process of its own: this changes nothing outside the run
    ctx = ray.train.get_context()
    return WorkerContext(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())


def shard_batches(train_cfg: TrainConfig, section: str, rank: int, world: int) -> EpochBatches:
    """Endless, shuffled (frames uint8 (b, T, H, W, 3), labels (b,)) batches of this rank, epoch after epoch.

    streaming: this rank's equal split, ``drop_last`` batches of b (an equal
    split gives every rank the same count, so no rank waits in DDP on a short
    batch). deterministic: the whole split, in global batches of world·b of
    which this rank keeps rows [rank·b, (rank+1)·b); every rank shuffles alike.

    Shuffling: shards are written video by video, so clips in file order give
    batches of one or two videos (one colour, one background) and the model
    chases each in turn. The driver randomises the block order
    (:func:`read_train_split`); here Ray Data's local shuffle buffer
    (``shuffle_buffer`` clips, seeded by seed and epoch) mixes clips across
    blocks. A share of at most ``epoch_cache_mb`` is kept in (CPU) memory once
    one epoch has streamed through; later epochs replay it as a fresh seeded
    permutation of all its clips (starting a Ray Data epoch costs ~0.1 s, paid
    every few steps when epochs are short). Every rank decides alike (equal
    splits hold equal bytes), so no rank waits in Ray Data's epoch barrier for
    one that stopped streaming.
    """
    import ray.train

    shard = ray.train.get_dataset_shard("train")
    b = train_cfg.batch_size
    deterministic = train_cfg.data_order == "deterministic"
    size = b * world if deterministic else b  # rows per batch read from the stream
    limit = train_cfg.epoch_cache_mb * 2**20
    cache: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    state: dict[str, Any] = {"caching": limit > 0, "complete": False, "bytes": 0, "all": None}

    def epoch_seed(epoch: int) -> int:
        # deterministic: one permutation for all ranks (they slice the same global batches).
        return (train_cfg.seed * 1_000_003 + epoch * 7919 + (0 if deterministic else 104_729 * rank)) % (2**31)

    def mine(frames: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not deterministic:
            return frames, labels
        lo, hi = rank * b, (rank + 1) * b
        return frames[lo:hi], (labels[lo:hi] if labels is not None else None)

    def stream(epoch: int) -> Any:
        shuffle = train_cfg.shuffle_buffer > 0
        # CPU batches: the fit loop moves each to the device; a cache must not hold GPU memory.
        return shard.iter_torch_batches(
            batch_size=size, drop_last=True, prefetch_batches=train_cfg.prefetch_batches, device="cpu",
            local_shuffle_buffer_size=train_cfg.shuffle_buffer if shuffle else None,
            local_shuffle_seed=epoch_seed(epoch) if shuffle else None,
        )

    def replay(epoch: int) -> Any:
        if state["all"] is None:  # one tensor of every cached clip, built once
            frames = torch.cat([f for f, _ in cache])
            labels = torch.cat([lab for _, lab in cache]) if cache[0][1] is not None else None
            state["all"] = (frames, labels)
            cache.clear()
        for frames, labels in shuffled_batches(*state["all"], size, epoch_seed(epoch)):
            yield mine(frames, labels)

    def epoch(e: int) -> Any:
        if state["complete"]:
            yield from replay(e)
            return
        cache.clear()  # only an epoch streamed from its start to its end is replayed
        state["bytes"] = 0
        for batch in stream(e):
            item = (batch["frames"], batch.get("label"))
            if state["caching"]:
                state["bytes"] += item[0].numel() * item[0].element_size()
                if state["bytes"] > limit:
                    state["caching"] = False
                    cache.clear()
                else:
                    cache.append(item)
            yield mine(*item)
        state["complete"] = state["caching"] and bool(cache)

    return EpochBatches(
        epoch,
        empty_error=lambda: UserError(
            f"this worker's share of the train split holds no full batch of {b} clips: "
            f"lower {section}.batch_size (or {section}.num_workers)"
        ),
    )
