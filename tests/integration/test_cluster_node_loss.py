"""Drill: the two-node cluster job of test_cluster.py, with the second node lost mid-training.

The job is the same lean tiny workflow, submitted with `vidgen submit` to a real
two-node cluster with token auth and an `mlflow server`. While ``train_vae``'s
training worker runs on the second node, that node's raylet is SIGKILLed (the
node dies as a lost machine looks to Ray). The job must still SUCCEED: Ray Train
restarts the worker group on the head (``train_vae.max_failures``, default 2)
from the latest checkpoint, losing at most one checkpoint interval, and the
ingest done before the loss still accounts for every input video.

Placement, made deterministic: training workers ask for one ``train_slot`` (each
node offers one); until the kill a small actor of the test holds the head's, so
the first worker group can only start on the second node; it lets go just
before the kill, so the restarted group fits on the head. The ``train_vae``
step's own task (where Ray Train's controller and dataset actors live) is pinned
to the head; no other step is pinned.

Slow (minutes on 2 busy cores): runs with `make drills` (VIDGEN_SLOW_DRILLS=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from clusterjobs import LEAN, ROOT, cluster_and_server, job_env, vidgen_command
from procs import VENV_BIN, session_pids, stop_session

from vidgen_core.data import schema
from vidgen_core.train.checkpoint import read_meta

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow, pytest.mark.reliability,
              pytest.mark.timeout(900)]

STEPS, EVERY = 60, 10
SLOT = "train_slot"
# The head's train_slot, held until the kill: an actor of a driver of the test's own.
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


def _lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return out


def _latest_checkpoint(run_dir: Path) -> int:
    steps = []
    for d in run_dir.glob("checkpoint_0*"):
        try:
            steps.append(int(read_meta(d)["step"]))
        except (FileNotFoundError, ValueError, KeyError):
            continue
    return max(steps, default=0)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _files_accounted(videos: list[Path], shard_dir: str) -> int:
    """How many of ``videos`` have clips in the shards or a row in the error list."""
    clips_of: Counter[str] = Counter()
    for uri in schema.shard_uris(shard_dir):
        clips_of.update(os.path.realpath(s) for s in pq.read_table(uri, columns=["source"])[0].to_pylist())
    errors = {os.path.realpath(e["source"]) for e in schema.read_errors(shard_dir).to_pylist()}
    return sum(clips_of[os.path.realpath(v)] > 0 or os.path.realpath(v) in errors for v in videos)


@pytest.fixture
def stack(tmp_path_factory):
    """A two-node cluster whose head can host the training worker too, and an MLflow server."""
    with cluster_and_server(tmp_path_factory, head_cpus=2, head_resources={SLOT: 1},
                            worker_resources={SLOT: 1}) as running:
        yield running


def test_the_job_survives_losing_the_training_node(stack, tmp_path: Path, drill) -> None:
    from mlflow import MlflowClient

    cluster, server = stack
    case = drill(
        "worker node lost mid-training", "fault",
        "SIGKILL of the second node's raylet during train_vae (two-node cluster, token auth, job submitted with "
        "vidgen submit)",
        "job SUCCEEDED; steps lost <= one checkpoint interval; every ingest input accounted",
    )
    nodes = cluster.node_ids()
    wd = tmp_path / "shared-wd"  # one machine: every node sees it, as an NFS mount would be seen
    procs: list[subprocess.Popen] = []
    try:
        holder = subprocess.Popen([str(VENV_BIN / "python"), "-c", HOLDER, f"127.0.0.1:{cluster.gcs_port}"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  env=cluster.env, cwd=tmp_path, start_new_session=True)
        procs.append(holder)
        assert holder.stdout.readline().strip() == nodes["head"], "the holder of the head's train_slot is not on the head"

        overrides = [f"train_vae.steps={STEPS}", f"train_vae.checkpoint_every={EVERY}", "train_vae.log_every=1",
                     "train_vae.resources_per_worker={%s: 1}" % SLOT, "ray.step_resources={train_vae: {head_pool: 1}}",
                     "storage.shared=true"]
        args = ["submit", "--", *LEAN, "--workdir", str(wd), *[a for o in overrides for a in ("--set", o)]]
        log_path = tmp_path / "submit.log"
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            submit = subprocess.Popen(vidgen_command(args), cwd=ROOT, env=job_env(cluster, server.url), stdout=log,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(submit)

        # Wait for training on the second node past two checkpoints, then take the node away.
        status = None
        victim = None
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and submit.poll() is None:
            found = list(wd.glob("ray_results/train_vae-*/workers/rank0.jsonl"))
            if found:
                status = found[0]
                lines = _lines(status)
                progress = [r for r in lines if r["event"] == "progress"]
                if progress and progress[-1]["step"] >= 2 * EVERY + 2 and _latest_checkpoint(status.parent.parent) >= 2 * EVERY:
                    victim = progress[-1]["pid"]
                    break
            time.sleep(0.05)
        assert victim is not None, f"train_vae never got past step {2 * EVERY + 2}: {log_path.read_text()[-4000:]}"
        assert victim in session_pids(cluster.worker.proc.pid), "the training worker is not on the second node"
        run_dir = status.parent.parent
        holder.stdin.close()  # the head's train_slot is free: the restarted group can start there
        holder.wait(timeout=60)
        checkpoint_at_kill = _latest_checkpoint(run_dir)
        cluster.worker.kill_raylet()
        t_kill = time.time()
        deadline = time.monotonic() + 60
        while _alive(victim) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(victim), "the training worker outlived its node's raylet by a minute"
        kill_step = max(r["step"] for r in _lines(status) if r["event"] == "progress" and r["pid"] == victim)

        rc = submit.wait(timeout=480)
        elapsed = time.monotonic() - t0
        out = log_path.read_text()
        print(f"vidgen submit: {elapsed:.0f}s, exit {rc}")
        assert rc == 0, out[-8000:]
        submitted = [line for line in out.splitlines() if line.startswith("[vidgen] submitted job raysubmit_")]
        assert submitted, out[-8000:]
        job_id = submitted[0].split()[3]
        assert f"[vidgen] job {job_id} SUCCEEDED" in out
        assert len(cluster.alive_nodes()) == 1  # it finished on the head alone
    finally:
        for proc in procs:
            stop_session(proc, grace_s=10)

    # Training: a second attempt in a new process, from the last checkpoint, to the last step.
    lines = _lines(status)
    starts = [r for r in lines if r["event"] == "start"]
    assert len(starts) == 2 and starts[0]["pid"] == victim != starts[1]["pid"], starts
    resumed = starts[1]["start_step"]
    assert resumed >= checkpoint_at_kill >= 2 * EVERY, (resumed, checkpoint_at_kill)
    lost = kill_step - resumed
    assert 0 <= lost <= EVERY, (kill_step, resumed)
    assert any(r["event"] == "done" and r["step"] == STEPS and r["pid"] == starts[1]["pid"] for r in lines)
    resumed_after = starts[1]["time"] - t_kill

    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name("vidgen-tiny")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    steps = {r.data.tags["vidgen.step"]: r for r in runs if r.data.tags.get("vidgen.kind") == "step"}
    assert all(r.info.status == "FINISHED" for r in steps.values()), {k: r.info.status for k, r in steps.items()}
    assert "register" in steps
    vae = steps["train_vae"]
    assert vae.data.tags["vidgen.node_id"] == nodes["head"]
    outputs = json.loads(vae.data.tags["vidgen.outputs"])
    assert outputs["steps"] == STEPS and outputs["start_step"] == resumed, outputs

    # Ingest (before the loss): every input video is in the clips or in the error list.
    videos = sorted(p for p in wd.glob("steps/synth-*/videos/**/*") if p.is_file() and p.suffix == ".mp4")
    shard_dir = json.loads(steps["ingest"].data.tags["vidgen.outputs"])["shard_dir"]
    manifest = schema.read_manifest(shard_dir)
    accounted = _files_accounted(videos, shard_dir)
    assert videos and manifest["num_inputs"] == len(videos) == accounted, (len(videos), manifest["num_inputs"], accounted)

    case.figure = (f"job SUCCEEDED in {elapsed:.0f} s; steps lost {lost} <= interval {EVERY} (killed at step {kill_step}, "
                   f"resumed from {resumed} on the head {resumed_after:.0f} s later); files accounted {accounted}/{len(videos)}")
    print(case.figure)
