"""SIGKILL the `vidgen run` driver in the middle of train_vae, run again: it resumes, registers once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from plumbing import PLUMBING

from vidgen_core.config import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"
# Enough VAE steps, checkpointed often, that the kill lands mid-training; the rest minimal.
OVERRIDES = ["synth.videos_per_class=3", "train_vae.steps=40", "train_vae.checkpoint_every=5",
             "train_gan.steps=5", "eval.max_test_clips=16", *PLUMBING]


def _latest_checkpoint_step(workdir: Path) -> int:
    """Step of the newest checkpoint Ray Train has recorded for train_vae (0 if none yet)."""
    for snapshot in workdir.glob("ray_results/train_vae-*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
        except (OSError, ValueError):  # being written right now
            continue
        return int((latest.get("metrics") or {}).get("step", 0))
    return 0


def test_sigkill_during_train_vae_then_rerun_resumes_from_the_checkpoint(ray_cluster, spawn, tmp_path):
    import mlflow

    from procs import VENV_BIN, session_pids, stop_session
    from workflows.dag import downstream_of
    from workflows.executor import run_pipeline

    workdir = tmp_path / "wd"
    cmd = [str(VENV_BIN / "vidgen"), "run", "-c", str(RECIPE), "-w", str(workdir)]
    for item in OVERRIDES:
        cmd += ["--set", item]
    log = open(tmp_path / "first-run.log", "wb")
    proc = spawn(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 300
    while (killed_at := _latest_checkpoint_step(workdir)) == 0:
        assert proc.poll() is None, (tmp_path / "first-run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no train_vae checkpoint within 300 s"
        time.sleep(0.1)
    stop_session(proc, signal.SIGKILL)  # the driver and everything it started, at once
    assert session_pids(proc.pid) == []  # no Ray process outlived it
    assert 0 < killed_at < 40

    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    [killed_run] = client.search_runs(
        [client.get_experiment_by_name("vidgen-tiny").experiment_id], "tags.`vidgen.step` = 'train_vae'"
    )
    assert killed_run.info.status == "RUNNING"  # nobody could end it

    result = run_pipeline(load_config(RECIPE, OVERRIDES), workdir, echo=lambda _: None)
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
    for name in ("vidgen-vae", "vidgen-gan"):
        assert len(client.search_model_versions(f"name = '{name}'")) == 1
