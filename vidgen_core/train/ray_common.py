"""Ray Train plumbing shared by the VAE and GAN adapters (driver side and worker side).

Driver: one ``TorchTrainer`` per run with scaling from ``TrainConfig``
(workers, GPUs, CPUs and custom resources per worker), ``FailureConfig
(max_failures)`` so a lost worker restarts the group from the latest
checkpoint, ``CheckpointConfig(num_to_keep)``, and a ``DataConfig`` that either
streams an equal split to each rank or (``data_order: deterministic``) gives
every rank the whole split in order to slice its share of each global batch.

Worker: :func:`shard_batches` (an :class:`~vidgen_core.train.loop.EpochBatches`
with the same number of full batches on every rank, so DDP never waits on a
short last batch) and :class:`Rank0Tracker` (MLflow metrics, events and sample
videos from rank 0). Checkpoints and status files: :mod:`vidgen_core.train.ray_state`.

Ray and MLflow are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from vidgen_core.config import PipelineConfig, TrainConfig, config_dict
from vidgen_core.errors import UserError
from vidgen_core.train.loop import EpochBatches, shuffled_batches

if TYPE_CHECKING:
    import ray.data

PREVIEW_CLIPS = 4  # clips in the reconstruction / sample video
VIDEO_FPS = 8.0
CACHE_MAX_BYTES = 2 << 30  # train splits up to this size are read once into the object store
STATUS_DIR = "workers"  # per-rank status files under the run directory


@dataclasses.dataclass(frozen=True)
class JobArgs:
    """Per-run arguments that are not part of the pipeline config (JSON-able)."""

    out_dir: str
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    vae_dir: str | None = None
    num_classes: int = 0
    label_names: tuple[str, ...] = ()
    run_dir: str | None = None  # storage_path/run_name: where Ray keeps this run's checkpoints
    status_dir: str | None = None  # local directory for worker status files (None: remote storage)
    shard_dir: str | None = None  # rank 0 reads validation clips from here for quality-over-steps metrics


# --------------------------------------------------------------------------- driver


def local_abs(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def read_manifest_or_none(shard_dir: str) -> dict[str, Any] | None:
    from vidgen_core.data.schema import read_manifest

    try:
        return read_manifest(shard_dir)
    except UserError:
        return None


def check_batches_fit(n_clips: int | None, train_cfg: TrainConfig, section: str) -> None:
    """Fail on the driver, in one line, before any worker starts (the worker check is the backstop)."""
    if n_clips is not None and n_clips // train_cfg.num_workers < train_cfg.batch_size:
        raise UserError(
            f"the train split has {n_clips} clips: {train_cfg.num_workers} worker(s) cannot each get a full batch of "
            f"{train_cfg.batch_size}; lower {section}.batch_size (or {section}.num_workers)"
        )


def _is_local_cluster(cfg: PipelineConfig) -> bool:
    """True when vidgen started the Ray it runs on: no ``ray.address``, no ``RAY_ADDRESS``,
    or (inside a step, where the executor sets ``RAY_ADDRESS``) ``VIDGEN_LOCAL_RAY=1``.

    Such a cluster never grows: a missing resource there is an error. A remote
    cluster may have an autoscaler that adds nodes on demand
    (``cluster/ray-cluster.yaml`` starts with no GPU node), so there it is a warning.
    """
    if os.environ.get("VIDGEN_LOCAL_RAY") == "1":
        return True
    return cfg.ray.address is None and not os.environ.get("RAY_ADDRESS")


def check_resources(cfg: PipelineConfig, train_cfg: TrainConfig, section: str) -> None:
    """Fail on the driver, in one line, when no worker of ``section`` could ever start on a local cluster.

    Two cases, where Ray Train would otherwise wait for resources (on a local
    cluster, forever): ``use_gpu`` with no GPU in the cluster, and a worker that
    asks for more CPUs than the largest node has. On a remote cluster each only warns.
    """
    import ray

    from vidgen_core.ray_runtime import ensure_ray

    ensure_ray()  # the caller's Ray (the pipeline's), else a local one
    local = _is_local_cluster(cfg)
    if train_cfg.use_gpu and ray.cluster_resources().get("GPU", 0) <= 0:
        if local:
            raise UserError(f"{section}.use_gpu is true but no GPU is visible to Ray; set it to false or add GPU nodes")
        warnings.warn(f"{section}.use_gpu is true and the cluster has no GPU yet: waiting for the autoscaler", stacklevel=2)
    largest = max((n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0)
    if train_cfg.cpus_per_worker <= largest:
        return
    message = (
        f"{section}.cpus_per_worker is {train_cfg.cpus_per_worker:g} but the largest node of the cluster has "
        f"{largest:g} CPUs, so no {section} worker can start"
    )
    if local:
        raise UserError(f"{message}; lower {section}.cpus_per_worker (or start Ray with more CPUs: ray.num_cpus)")
    warnings.warn(f"{message} yet: waiting for the autoscaler", stacklevel=2)


def read_train_split(shard_dir: str, manifest: dict[str, Any] | None, seed: int = 0) -> ray.data.Dataset:
    """The train split, its blocks in a seeded random order; a small one is read into the object store.

    Blocks follow the shards' file order (one video after another); randomising
    their order is the coarse half of the shuffle, the workers' local shuffle
    buffer (:func:`shard_batches`) the fine half.

    Every epoch of a lazy dataset re-reads and re-filters the Parquet shards; with
    short epochs that dominates (measured on 2 CPUs, 17 clips of 8x16x16: 0.36 s
    per step lazy, 0.024 s materialized). A split within the budget is read here,
    one block per shard, with plain pyarrow: materializing it through Ray Data's
    tasks took 6.3 s for 37 clips, most of it starting the tasks' workers.
    """
    import ray

    from vidgen_core.data.readers import read_split, read_split_in_memory

    manifest = manifest or {}
    nbytes = manifest.get("clips_per_split", {}).get("train", 0) * int(np.prod(manifest.get("clip_shape") or [0]))
    budget = min(CACHE_MAX_BYTES, 0.25 * ray.cluster_resources().get("object_store_memory", 0))
    if 0 < nbytes <= budget:
        return read_split_in_memory(shard_dir, "train", seed)
    return read_split(shard_dir, "train").randomize_block_order(seed=seed)


def run_trainer(
    worker: Callable[[dict], dict],
    cfg: PipelineConfig,
    train_cfg: TrainConfig,
    args: JobArgs,
    dataset: ray.data.Dataset,
    storage_path: str,
    run_name: str,
) -> dict[str, Any]:
    """Build and run the TorchTrainer; returns rank 0's summary plus checkpoint and run paths."""
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = local_abs(storage_path)
    run_dir = f"{storage.rstrip('/')}/{run_name}"
    status_dir = args.status_dir or (os.path.join(run_dir, STATUS_DIR) if "://" not in storage else None)
    args = dataclasses.replace(args, run_dir=run_dir, status_dir=status_dir)
    resources = {"CPU": train_cfg.cpus_per_worker, **train_cfg.resources_per_worker}
    if train_cfg.use_gpu:
        resources["GPU"] = train_cfg.gpus_per_worker
    if train_cfg.data_order == "deterministic":
        # Every rank reads the whole split in order and keeps its slice of each global batch.
        data_config = DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True))
    else:
        data_config = DataConfig()
    trainer = TorchTrainer(
        worker,
        train_loop_config={"pipeline": config_dict(cfg), "args": dataclasses.asdict(args)},
        scaling_config=ScalingConfig(
            num_workers=train_cfg.num_workers,
            use_gpu=train_cfg.use_gpu,
            # Fractional CPUs leave room for Ray Data's tasks on small machines.
            resources_per_worker=resources,
        ),
        run_config=RunConfig(
            storage_path=storage,
            name=run_name,
            failure_config=FailureConfig(max_failures=train_cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=train_cfg.checkpoint_keep),
        ),
        datasets={"train": dataset},
        dataset_config=data_config,
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        user_error = find_user_error(exc)
        if user_error is not None:  # surface the worker's one-line message, not a Ray traceback
            raise UserError(str(user_error)) from exc
        raise
    out = dict(result.return_value or {})
    out["checkpoint"] = result.checkpoint.path if result.checkpoint is not None else None
    out["run_path"] = result.path
    return out


# --------------------------------------------------------------------------- worker


@dataclasses.dataclass
class WorkerContext:
    """Who and where this training worker is."""

    rank: int
    world: int
    device: torch.device


def worker_context() -> WorkerContext:
    import ray.train
    import ray.train.torch

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


class Rank0Tracker:
    """MLflow side effects of rank 0 (no-ops elsewhere or without a run id); keeps the last metrics.

    Also keeps the steady-state step time (window means after the first window,
    which holds start-up and compilation) for the run summary.
    """

    def __init__(self, args: JobArgs, rank: int, world_size: int, total_steps: int | None = None) -> None:
        from vidgen_core.progress import Reporter

        self.enabled = rank == 0 and args.mlflow_run_id is not None
        self.total_steps = total_steps
        # Live progress for the driver's console, keyed like the step's MLflow run (rank 0 only).
        self.progress = Reporter(args.mlflow_run_id if self.enabled else None, interval_s=2.0)
        self.run_id = args.mlflow_run_id
        self.world_size = world_size
        self.last: dict[str, float] = {}
        self.step_times: list[tuple[int, float]] = []  # (steps in window, mean step time)
        self.cpu_times: list[float] = []  # process CPU seconds per window (all threads of this worker)
        self._last_step, self._last_cpu = 0, time.process_time()
        self.client = None
        if self.enabled:
            import mlflow

            from vidgen_core.tracking.resilient_logger import ResilientMetricLogger

            self.client = mlflow.MlflowClient(args.tracking_uri)
            # Queued and sent from a thread: a tracking outage neither blocks nor kills training.
            self.metrics = ResilientMetricLogger(self.client, args.mlflow_run_id)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.last = {**metrics, "clips_per_s_total": metrics["clips_per_s"] * self.world_size}
        self.step_times.append((step - self._last_step, metrics["step_time_s"]))
        cpu = time.process_time()
        self.cpu_times.append(cpu - self._last_cpu)
        self._last_step, self._last_cpu = step, cpu
        if self.enabled:
            self.metrics.log(self.last, step, int(time.time() * 1000))
            self.progress.set(
                kind="train", step=step, total=self.total_steps, loss=float(metrics.get("loss", float("nan"))),
                clips_per_s=self.last["clips_per_s_total"], step_time_s=metrics["step_time_s"],
            )
            if self.total_steps is not None and step >= self.total_steps:
                self.progress.flush()

    def close(self) -> None:
        """Deliver the metrics still queued (waits a bounded time for an absent server)."""
        if self.enabled:
            self.metrics.close()

    def on_event(self, step: int, name: str, info: dict[str, Any]) -> None:
        """Record a training event (e.g. a guardrail rollback) as a tag and a JSON artifact."""
        if not self.enabled:
            return
        try:
            n = int(info.get("rollbacks", 0))
            self.client.set_tag(self.run_id, f"vidgen.event.{name}.{n}", json.dumps(info, sort_keys=True, default=float)[:4900])
            self.client.log_metric(self.run_id, f"event_{name}", float(n), step=step)
        except Exception as exc:
            warnings.warn(f"MLflow event logging failed at step {step}: {exc}", stacklevel=2)

    def steady_step_time(self) -> float | None:
        """Mean step time over every window but the first (None with fewer than two windows)."""
        windows = self.step_times[1:]
        steps = sum(n for n, _ in windows)
        return sum(n * t for n, t in windows) / steps if steps else None

    def steady_cpu_per_step(self) -> float | None:
        """Process CPU seconds per step over every window but the first: work, whatever else loads the machine."""
        steps = sum(n for n, _ in self.step_times[1:])
        return sum(self.cpu_times[1:]) / steps if steps else None

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Queue extra metrics (e.g. validation quality) at ``step``; rank 0 only."""
        if self.enabled:
            self.metrics.log(metrics, step, int(time.time() * 1000))

    def log_png(self, image: np.ndarray, name: str, subdir: str = "previews") -> None:
        """Write uint8 (H, W, 3) as a lossless PNG ``name`` and log it under ``subdir``."""
        if not self.enabled:
            return
        from vidgen_core.eval.previews import write_png

        with tempfile.TemporaryDirectory() as d:
            try:
                self.client.log_artifact(self.run_id, str(write_png(image, os.path.join(d, name))), subdir)
            except Exception as exc:
                warnings.warn(f"MLflow image logging failed for {name}: {exc}", stacklevel=2)

    def log_video(self, frames: np.ndarray, name: str, subdir: str = "samples") -> None:
        """Write uint8 (T, H, W, 3) as ``name`` and log it under the run's ``subdir``."""
        if not self.enabled:
            return
        from vidgen_core.video.encode import write_mp4

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, name)
            write_mp4(frames, path, fps=VIDEO_FPS)
            try:
                self.client.log_artifact(self.run_id, path, subdir)
            except Exception as exc:
                warnings.warn(f"MLflow video logging failed for {name}: {exc}", stacklevel=2)


def summary(train_cfg: TrainConfig, state: Any, tracker: Rank0Tracker, out_dir: str) -> dict[str, Any]:
    """The worker's return value (rank 0's is the run's result)."""
    # A resumed run with nothing left to do still reports the metrics stored with its checkpoint.
    metrics = tracker.last or (dict(state.extra.get("metrics", {})) if state is not None else {})
    return {
        "model_dir": out_dir,
        "steps": train_cfg.steps,
        "start_step": state.step if state is not None else 0,
        "final_loss": float(metrics.get("loss", float("nan"))),
        "metrics": metrics,
        "steady_step_time_s": tracker.steady_step_time(),
        "steady_cpu_s_per_step": tracker.steady_cpu_per_step(),
        "torch_threads": torch.get_num_threads(),
        "niceness": os.nice(0),  # Ray starts workers at nice 15 (RAY_worker_niceness) unless told otherwise
    }
