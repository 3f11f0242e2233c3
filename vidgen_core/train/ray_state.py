"""What a Ray Train worker persists in the run directory: checkpoints and status lines.

    storage_path/run_name/checkpoint_00000200/{state.pt, meta.json}   rank 0, every checkpoint_every steps
    storage_path/run_name/workers/rank{r}.jsonl                       every rank, local storage only

Resuming takes the newest *complete* checkpoint: Ray's own latest
(``ray.train.get_checkpoint()``) or, if newer, one found in the run directory.
Ray Train registers a reported checkpoint only when its controller next polls
the workers, so a worker killed right after persisting checkpoint N would
otherwise restart from N - 1 intervals back; reading the directory keeps the
loss to at most one interval. Ray and pyarrow are imported inside functions.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from vidgen_core.train.checkpoint import TrainingState
    from vidgen_core.train.ray_tracker import Rank0Tracker

CHECKPOINT_PREFIX = "checkpoint_"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}"


def checkpoint_hook(
    rank: int, tracker: Rank0Tracker, unregistered: str | None = None
) -> Callable[[int, Callable[[], Any]], None]:
    """``on_checkpoint`` for the fit loops: rank 0 writes the full state, every rank reports (a barrier).

    ``unregistered``: a checkpoint this attempt resumed from that Ray never
    registered (see :func:`resume_state`); Ray will not delete it, so rank 0
    does, once a newer checkpoint is on storage.
    """
    import ray.train

    from vidgen_core.train.checkpoint import save_state

    stale = [unregistered] if unregistered and rank == 0 else []

    def on_checkpoint(step: int, state_fn: Callable[[], Any]) -> None:
        metrics = {"step": step, **tracker.last}
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(state_fn(), d)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d), checkpoint_dir_name=checkpoint_name(step))
        while stale:
            _delete(stale.pop())

    return on_checkpoint


def _delete(uri: str) -> None:
    from vidgen_core import storage

    fs, path = storage.resolve(uri)
    try:
        fs.delete_dir(path)
    except OSError as exc:
        warnings.warn(f"could not delete the superseded checkpoint {uri}: {exc}", stacklevel=2)


def _newest_on_storage(run_dir: str, newer_than: int) -> tuple[int, str] | None:
    """(step, uri) of the newest checkpoint directory in ``run_dir`` with a meta.json, if its step > ``newer_than``."""
    import pyarrow.fs as pafs

    from vidgen_core import storage
    from vidgen_core.train.checkpoint import META_FILE

    fs, path = storage.resolve(run_dir)
    try:
        entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return None
    names = sorted((e.base_name for e in entries if e.type == pafs.FileType.Directory
                    and e.base_name.startswith(CHECKPOINT_PREFIX)), reverse=True)
    for name in names:
        try:
            with fs.open_input_stream(f"{path}/{name}/{META_FILE}") as f:
                step = int(json.loads(f.read())["step"])
        except (OSError, ValueError, KeyError):
            continue  # still being written, or not ours
        return (step, f"{run_dir.rstrip('/')}/{name}") if step > newer_than else None
    return None


def resume_state(device: torch.device, run_dir: str | None) -> tuple[TrainingState | None, str | None]:
    """(the TrainingState to continue from or None, the URI of an unregistered checkpoint it came from or None).

    Called after a restart or on a re-run under the same name.
    """
    import ray.train

    from vidgen_core.train.checkpoint import load_state

    state, unregistered = None, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_state(d, map_location=device)
    newer = _newest_on_storage(run_dir, state.step if state is not None else 0) if run_dir else None
    if newer is not None:
        step, uri = newer
        try:
            with tempfile.TemporaryDirectory() as d:
                import pyarrow.fs as pafs

                from vidgen_core import storage

                fs, path = storage.resolve(uri)
                pafs.copy_files(path, d, source_filesystem=fs)
                newer_state = load_state(d, map_location=device)
            warnings.warn(
                f"resuming from {uri} (step {step}): newer than the checkpoint Ray had registered "
                f"(step {state.step if state is not None else 0})",
                stacklevel=2,
            )
            state, unregistered = newer_state, uri
        except (OSError, RuntimeError, ValueError) as exc:  # incomplete copy: keep Ray's
            warnings.warn(f"ignoring unreadable checkpoint {uri}: {exc}", stacklevel=2)
    return state, unregistered


class StatusFile:
    """Appends JSON lines {"event", "pid", "rank", "step", "start_step", "time"} to ``rank{r}.jsonl``.

    Operators (and the fault test) see which process is which rank and how far
    each attempt got; a restarted attempt starts with a new "start" line.
    """

    def __init__(self, status_dir: str | None, rank: int, start_step: int) -> None:
        self.path = os.path.join(status_dir, f"rank{rank}.jsonl") if status_dir else None
        self.rank, self.start_step = rank, start_step
        if status_dir:
            os.makedirs(status_dir, exist_ok=True)
        self.write("start", start_step)

    def write(self, event: str, step: int) -> None:
        if not self.path:
            return
        line = {"event": event, "pid": os.getpid(), "rank": self.rank, "step": step,
                "start_step": self.start_step, "time": time.time()}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
