"""Drill: the tracking server stopped for 30 s while a real `vidgen run` trains its VAE.

A lean tiny pipeline runs against a real `mlflow server` (SQLite backend,
proxied artifacts). Once train_vae's first metrics reach the server, the server
is stopped, left down for 30 s and started again on the same store and port.
The pipeline must finish as if nothing happened: every metric point training
logged, those measured during the outage included, is in the server, at its
step, exactly once. tests/integration/test_tracking_server.py drills the
metric logger alone; this is the whole workflow around it (the driver, the
other steps, Ray Train's worker). The server is down for the 30 s plus its own restart
(an `mlflow server` took 43 s to over 90 s to start beside the training on 2 cores shared
with other work); the figure gives the whole outage as measured. Marked ``slow`` (5-7 minutes
on 2 cores).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from plumbing import PLUMBING, as_cli_args

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(1200)]

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"
OUTAGE_S = 30.0
# ~0.15-0.23 s a step on 2 cores: 150-230 s of training, past the 30 s outage plus the server's
# restart (whole outages of 73-114 s measured on a machine shared with other workflows).
STEPS, LOG_EVERY = 1000, 20
LEAN = [
    "synth.videos_per_class=3", f"train_vae.steps={STEPS}", f"train_vae.log_every={LOG_EVERY}",
    "train_vae.checkpoint_every=500", "train_vae.sample_every=0", "train_gan.steps=6",
    "train_gan.checkpoint_every=3", "train_gan.batch_size=4", "eval.max_test_clips=8", *PLUMBING,
]
# What rank 0 logs every log_every steps (vidgen_core/train/ray_tracker.py), each a full history.
TRAIN_KEYS = ("loss", "step_time_s", "clips_per_s_total")


def _train_vae_run(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], "tags.`vidgen.step` = 'train_vae'")
    return runs[0] if runs else None


def test_tracking_server_down_for_30_s_during_real_training(mlflow_server, spawn, tmp_path, monkeypatch, drill) -> None:
    from mlflow import MlflowClient
    from procs import VENV_BIN

    case = drill("tracking server down 30 s during a real run", "fault",
                 f"`mlflow server` stopped while `vidgen run` trains its VAE ({STEPS} steps, metrics every "
                 f"{LOG_EVERY}), left down {OUTAGE_S:.0f} s, then started again on the same store and port",
                 "the pipeline exits 0 with every run FINISHED; train_vae's metric history has every logged "
                 "step exactly once, those logged during the outage included; each model registered once")

    server = mlflow_server(tmp_path / "server")
    wd, log_path = tmp_path / "wd", tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [str(VENV_BIN / "vidgen"), "run", "-c", str(RECIPE), "-w", str(wd),
           *as_cli_args([*LEAN, f"tracking.uri={server.url}"])]
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = spawn(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    # The test's own client (it only polls) does not retry; the pipeline keeps MLflow's defaults.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(server.url)
    deadline = time.monotonic() + 600
    while True:
        assert proc.poll() is None, log_path.read_text()[-4000:]
        assert time.monotonic() < deadline, "train_vae logged no metric within 600 s"
        run = _train_vae_run(client, "vidgen-tiny")
        if run is not None and client.get_metric_history(run.info.run_id, "loss"):
            break
        time.sleep(0.5)
    vae_run_id = run.info.run_id
    server.stop()
    down_ms = time.time() * 1000
    time.sleep(OUTAGE_S)
    # Same port, same backend store and artifact folder. Its start-up competes with training for the
    # 2 cores: 75 s to 100+ s measured on a shared machine, past start()'s default 90 s.
    server.start(timeout_s=300.0)
    up_ms = time.time() * 1000

    rc = proc.wait(timeout=900)
    seconds = time.monotonic() - t0
    console = log_path.read_text()
    assert rc == 0, console[-6000:]
    logs = console + "".join(p.read_text(errors="replace") for p in (wd / "logs").glob("*.log"))
    assert "could not be sent to MLflow" not in logs and "dropping the oldest" not in logs

    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name("vidgen-tiny")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    status = {r.data.tags.get("vidgen.step", "pipeline"): r.info.status for r in runs}
    assert len(runs) == 10 and set(status.values()) == {"FINISHED"}, status  # the pipeline and its 9 steps
    assert client.get_run(vae_run_id).info.status == "FINISHED"

    expected = sorted({s for s in range(1, STEPS + 1) if s % LOG_EVERY == 0} | {STEPS})
    histories = {key: client.get_metric_history(vae_run_id, key) for key in TRAIN_KEYS}
    for key, history in histories.items():
        steps = sorted(m.step for m in history)
        missing = sorted(set(expected) - set(steps))
        assert steps == expected, f"{key}: missing steps {missing}, got {len(steps)} points for {len(expected)}"
    loss = histories["loss"]
    during = sum(down_ms <= m.timestamp <= up_ms for m in loss)
    after = sum(m.timestamp > up_ms for m in loss)
    assert during > 0, "no metric was logged while the server was down: the outage missed training"
    assert after > 0, "training ended during the outage: the drill did not straddle it"

    for name in ("vidgen-vae", "vidgen-gan", "vidgen-probe"):
        versions = client.search_model_versions(f"name = '{name}'")
        assert len(versions) == 1, (name, [v.version for v in versions])
    outage_s = (up_ms - down_ms) / 1000
    case.figure = (f"metrics arrived {len(loss)}/{len(expected)} ({during} logged during the outage: {OUTAGE_S:.0f} s "
                   f"down + restart = {outage_s:.0f} s; {after} after it); pipeline exit 0, runs FINISHED "
                   f"{len(runs)}/{len(runs)}; registry 1+1+1 versions (vae+gan+probe); {seconds:.0f} s")
