"""Two pipelines at once on one fresh SQLite store; one of them is SIGKILLed in the middle of
train_vae and run again while the other goes on.

Resumption and concurrency are checked in one scenario because each costs a whole
workflow on 2 cores:

* resumption: the killed driver leaves its train_vae run RUNNING; the re-run marks
  it KILLED, reuses what finished before train_vae, continues train_vae's step
  counter from the last checkpoint and registers the pair once;
* concurrency: both pipelines finish and register their own pair, no "database is
  locked", and the store passes SQLite's integrity check.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from plumbing import PLUMBING

from vidgen_core.config import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"
COMMON = ["synth.videos_per_class=3", "eval.max_test_clips=16", *PLUMBING]
# Enough VAE steps, checkpointed often, that the kill lands mid-training; the rest minimal.
KILLED = [*COMMON, "train_vae.steps=40", "train_vae.checkpoint_every=5", "train_gan.steps=5", "train_vae.seed=1"]
# A genuinely different pipeline (its own VAE seed): it trains and registers its own pair.
STEADY = [*COMMON, "train_vae.steps=8", "train_gan.steps=2", "train_vae.seed=2"]


def _latest_checkpoint_step(workdir: Path) -> int:
    """Step of the newest checkpoint Ray Train has recorded for train_vae (0 if none yet)."""
    for snapshot in workdir.glob("ray_results/train_vae-*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
        except (OSError, ValueError):  # being written right now
            continue
        return int((latest.get("metrics") or {}).get("step", 0))
    return 0


def _vidgen_run(spawn, workdir: Path, overrides: list[str], log_path: Path) -> subprocess.Popen:
    from procs import VENV_BIN

    cmd = [str(VENV_BIN / "vidgen"), "run", "-c", str(RECIPE), "-w", str(workdir)]
    for item in overrides:
        cmd += ["--set", item]
    with open(log_path, "wb") as log:
        return spawn(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.reliability
def test_sigkill_during_train_vae_then_rerun_resumes_while_another_pipeline_runs(ray_cluster, spawn, tmp_path, drill):
    import mlflow

    case = drill("driver killed mid-training, beside another pipeline", "fault",
                 "SIGKILL of `vidgen run` and everything it started during train_vae, while a second pipeline "
                 "writes to the same SQLite store; then the same command again",
                 "no Ray process outlives it; the re-run reuses finished steps, resumes train_vae from its "
                 "checkpoint, marks the killed runs KILLED; each model registered once per pipeline; store intact")

    from procs import session_pids, stop_session
    from workflows.dag import downstream_of
    from workflows.executor import run_pipeline

    db = tmp_path / "shared" / "mlflow.db"
    uri = f"sqlite:///{db}"
    killed_sets, steady_sets = [*KILLED, f"tracking.uri={uri}"], [*STEADY, f"tracking.uri={uri}"]
    killed_wd, killed_log, steady_log = tmp_path / "killed", tmp_path / "killed.log", tmp_path / "steady.log"
    steady = _vidgen_run(spawn, tmp_path / "steady", steady_sets, steady_log)
    proc = _vidgen_run(spawn, killed_wd, killed_sets, killed_log)

    deadline = time.monotonic() + 300
    while (killed_at := _latest_checkpoint_step(killed_wd)) == 0:
        assert proc.poll() is None, killed_log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no train_vae checkpoint within 300 s"
        time.sleep(0.1)
    stop_session(proc, signal.SIGKILL)  # the driver and everything it started, at once
    assert session_pids(proc.pid) == []  # no Ray process outlived it
    assert 0 < killed_at < 40
    killed_pid = killed_log.read_text().splitlines()[0].split()[3]  # "[vidgen] pipeline run <id> · tracking …"

    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("vidgen-tiny").experiment_id
    [killed_run] = client.search_runs(
        [experiment_id], f"tags.`vidgen.step` = 'train_vae' and tags.`mlflow.parentRunId` = '{killed_pid}'"
    )
    assert killed_run.info.status == "RUNNING"  # nobody could end it

    # Run again (in this process) while the other pipeline is still going.
    result = run_pipeline(load_config(RECIPE, killed_sets), killed_wd, echo=lambda _: None)
    assert steady.wait(timeout=500) == 0, steady_log.read_text()[-3000:]

    # Resumption.
    reused = {n for n, r in result.steps.items() if r.reused}
    # train_judge needs only ingest, so whether it finished before the kill depends on timing;
    # everything that needs train_vae must have run again, everything before it must not have.
    assert {"synth", "ingest"} <= reused, reused
    assert not reused & downstream_of(["train_vae"]), reused
    vae = result.outputs("train_vae")
    print(f"killed after checkpoint step {killed_at}; re-run resumed at start_step {vae['start_step']} of 40")
    assert killed_at <= vae["start_step"] < 40, vae  # the step counter continued from the checkpoint
    assert client.get_run(killed_run.info.run_id).info.status == "KILLED"  # status is truthful again
    new_run = client.get_run(result.steps["train_vae"].run_id)
    assert new_run.data.tags["vidgen.resumes"] == killed_run.info.run_id

    # Concurrency: three pipeline runs (the killed one, its re-run, the other), each pair registered once.
    for log in (killed_log, steady_log):
        assert "database is locked" not in log.read_text()
    pipelines = client.search_runs([experiment_id], "tags.`vidgen.kind` = 'pipeline'")
    status = {r.info.run_id: r.info.status for r in pipelines}
    assert status.pop(killed_pid) == "KILLED"
    assert sorted(status.values()) == ["FINISHED", "FINISHED"] and result.pipeline_run_id in status
    steps = client.search_runs([experiment_id], "tags.`vidgen.kind` = 'step'")
    assert {r.info.status for r in steps if r.data.tags["mlflow.parentRunId"] != killed_pid} == {"FINISHED"}
    for name in ("vidgen-vae", "vidgen-gan"):
        assert len(client.search_model_versions(f"name = '{name}'")) == 2
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    case.figure = (f"resumed at step {vae['start_step']} (checkpoint {killed_at}) of 40; steps reused {len(reused)}; "
                   f"registry versions 2+2 (no duplicate); SQLite integrity ok")
