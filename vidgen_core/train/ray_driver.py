"""Ray Train, driver side: checks before any worker starts, the train split, one ``TorchTrainer`` per run.

One ``TorchTrainer`` per run with scaling from ``TrainConfig`` (workers, GPUs,
CPUs and custom resources per worker), ``FailureConfig(max_failures)`` so a
lost worker restarts the group from the latest checkpoint,
``CheckpointConfig(num_to_keep)``, and a ``DataConfig`` that either streams an
equal split to each rank or (``data_order: deterministic``) gives every rank
the whole split in order to slice its share of each global batch. Worker side:
:mod:`vidgen_core.train.ray_worker`; rank 0's tracking: :mod:`vidgen_core.train.ray_tracker`.

Ray and MLflow are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from vidgen_core.config import PipelineConfig, TrainConfig, config_dict
from vidgen_core.errors import UserError

if TYPE_CHECKING:
    import ray.data

CACHE_MAX_BYTES = 2 << 30  # train splits up to this size are read once into the object store
STATUS_DIR = "workers"  # per-rank status files under the run directory
# Ray Train's record of the checkpoints it has registered, in the run directory.
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"


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


def find_user_error(exc: BaseException) -> UserError | None:
    """The UserError a worker raised, dug out of Ray's WorkerGroupError / RayTaskError wrappers."""
    todo, seen = [exc], set()
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, UserError):
            return err
        todo.extend(getattr(err, "worker_failures", {}).values())
        todo.extend(e for e in (getattr(err, "cause", None), err.__cause__, err.__context__) if isinstance(e, BaseException))
    return None


def discard_unreadable_snapshot(run_dir: str) -> str | None:
    """Move an unreadable Ray Train snapshot in ``run_dir`` aside; returns where it went, or None.

    Ray writes ``checkpoint_manager_snapshot.json`` in place (truncate, then write), so a driver
    killed in between leaves it empty or cut short, and every later run under the same name then
    dies in ``TrainController.__init__`` (CheckpointManagerInitializationError: "Expecting value").
    Without it Ray starts with no registered checkpoint, and the workers resume from the newest
    complete checkpoint in the run directory (:func:`vidgen_core.train.ray_state.resume_state`), so no step is lost.
    """
    from vidgen_core import storage

    uri = storage.join(run_dir, RAY_SNAPSHOT)
    try:
        json.loads(storage.read_bytes(uri))
        return None
    except FileNotFoundError:
        return None
    except ValueError:  # empty or truncated JSON (UnicodeDecodeError is a ValueError too)
        pass
    aside = f"{uri}.unreadable-{int(time.time())}"
    fs, path = storage.resolve(uri)
    fs.move(path, storage.resolve(aside)[1])
    warnings.warn(f"Ray Train's checkpoint record {uri} was unreadable (a run killed while writing it); "
                  f"moved to {aside}: resuming from the newest complete checkpoint in {run_dir}", stacklevel=2)
    return aside


def worker_runtime_env(train_cfg: TrainConfig) -> dict[str, Any]:
    """The training workers' runtime env: their own nice value when ``worker_niceness`` is set."""
    if train_cfg.worker_niceness is None:
        return {}
    # Each Ray worker process applies RAY_worker_niceness to itself at start-up (Ray's job
    # supervisor gets nice 0 the same way), so only the ranks change, not Ray's helper actors.
    return {"env_vars": {"RAY_worker_niceness": str(train_cfg.worker_niceness)}}


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
    discard_unreadable_snapshot(run_dir)  # else a run killed mid-write could never resume
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
            worker_runtime_env=worker_runtime_env(train_cfg),
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
