"""Ray Train, rank 0's tracking: MLflow metrics, events and sample videos, and the run's summary.

Checkpoints and status files: :mod:`vidgen_core.train.ray_state`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import torch

from vidgen_core.config import TrainConfig
from vidgen_core.train.allocator import keeping_freed_memory
from vidgen_core.train.ray_driver import JobArgs

VIDEO_FPS = 8.0


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


def summary(train_cfg: TrainConfig, state: Any, tracker: Rank0Tracker, out_dir: str, numerics: str) -> dict[str, Any]:
    """The worker's return value (rank 0's is the run's result); ``numerics``: ``Numerics.describe()``."""
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
        "numerics": numerics,  # what precision/memory_format "auto" became on this worker's device
        "niceness": os.nice(0),  # train_*.worker_niceness; None: Ray's worker niceness (15 unless RAY_worker_niceness)
        "keeps_freed_memory": keeping_freed_memory(),  # train_*.keep_freed_memory, where glibc took it
    }
