"""Helpers of the node-loss part of tests/integration/test_cluster.py: who holds a training slot, what a
training worker's status file says, whether a process is alive, whether every ingest input is accounted.

Placement is made deterministic with one ``train_slot`` per node: training workers ask for one; until
the kill, an actor of the test (:data:`HOLDER`) holds the head's, so the first worker group can only
start on the second node; it lets go just before the kill, so the restarted group fits on the head.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from vidgen_core.data import schema
from vidgen_core.train.checkpoint import read_meta

SLOT = "train_slot"
# The head's train_slot, held until the kill: run as `python -c HOLDER GCS_ADDRESS`; prints the node it holds
# the slot on, and keeps it until its stdin closes.
HOLDER = textwrap.dedent(
    f"""
    import sys
    import ray

    ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)

    @ray.remote(num_cpus=0, resources={{"{SLOT}": 1, "head_pool": 1}})
    class Holder:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    holder = Holder.remote()
    print(ray.get(holder.node.remote()), flush=True)
    sys.stdin.read()  # held until the test closes stdin
    """
)


def status_lines(path: Path) -> list[dict]:
    """The JSON lines of a training worker's status file (``workers/rank0.jsonl``); a line being written is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def latest_checkpoint(run_dir: Path) -> int:
    """The step of the newest complete checkpoint under a Ray Train run folder (0 if none)."""
    steps = []
    for d in run_dir.glob("checkpoint_0*"):
        try:
            steps.append(int(read_meta(d)["step"]))
        except (FileNotFoundError, ValueError, KeyError):
            continue
    return max(steps, default=0)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def files_accounted(videos: list[Path], shard_dir: str) -> int:
    """How many of ``videos`` have clips in the shards or a row in the error list."""
    clips_of: Counter[str] = Counter()
    for uri in schema.shard_uris(shard_dir):
        clips_of.update(os.path.realpath(s) for s in pq.read_table(uri, columns=["source"])[0].to_pylist())
    errors = {os.path.realpath(e["source"]) for e in schema.read_errors(shard_dir).to_pylist()}
    return sum(clips_of[os.path.realpath(v)] > 0 or os.path.realpath(v) in errors for v in videos)
