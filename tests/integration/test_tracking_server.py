"""Against a real `mlflow server` (SQLite backend, proxied artifacts) on 127.0.0.1.

The whole pipeline logs, registers and loads through HTTP; and metrics logged
while the server is down arrive once it is back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from plumbing import PLUMBING

from vidgen_core.config import load_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"
# Just enough to exercise every step; the gate is opened so that a champion exists to load.
SMALL = ["train_vae.steps=20", "train_gan.steps=5", "synth.videos_per_class=3", "eval.max_test_clips=16",
         "registry.min_psnr_gain_db=-100", "registry.min_ssim_gain=-1", "registry.min_colour_ratio=0",
         "registry.gan_must_beat_prior=false", *PLUMBING]


def test_pipeline_registers_and_loads_through_the_server(ray_cluster, mlflow_server, tmp_path, monkeypatch):
    import mlflow

    from workflows.executor import run_pipeline

    server = mlflow_server()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    workdir = tmp_path / "wd"
    result = run_pipeline(load_config(RECIPE, SMALL), workdir, echo=lambda _: None)
    assert result.tracking_uri == server.url
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlartifacts").exists()
    reg = result.outputs("register")
    assert reg["gate_passed"] and reg["champion_moved"], reg["decision"]
    stored = {p.name for p in (server.root / "artifacts").rglob("*") if p.is_file()}
    assert {"weights.safetensors", "MLmodel", "_manifest.json", "outputs.json"} <= stored

    client = mlflow.MlflowClient(server.url)
    version = client.get_model_version_by_alias("vidgen-vae", "champion")
    assert version.tags["pipeline_run_id"] == result.pipeline_run_id

    # A fresh process that knows only the server URL loads the champion and runs it.
    script = textwrap.dedent(
        f"""
        import mlflow, numpy as np
        from vidgen_core.data.readers import load_clips
        clips, _ = load_clips({result.outputs("ingest")["shard_dir"]!r}, "test", limit=2)
        recon = mlflow.pyfunc.load_model("models:/vidgen-vae@champion").predict(clips)
        assert recon.shape == clips.shape and recon.dtype == np.uint8
        print("OK")
        """
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


def test_metrics_logged_during_an_outage_arrive_when_the_server_is_back(mlflow_server, monkeypatch):
    from mlflow import MlflowClient

    from vidgen_core.tracking.resilient_logger import ResilientMetricLogger

    # MLflow's own retries would stretch each failed call to minutes.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    server = mlflow_server()
    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment("outage")).info.run_id
    logger = ResilientMetricLogger(client, run_id, min_backoff_s=0.2, max_backoff_s=1.0)
    for step in range(5):
        logger.log({"loss": 1.0 / (step + 1)}, step)
    assert logger.flush(timeout_s=30)

    server.stop()
    t0 = time.monotonic()
    for step in range(5, 10):  # "training" goes on: logging neither blocks nor raises
        logger.log({"loss": 1.0 / (step + 1)}, step)
    assert time.monotonic() - t0 < 0.5
    assert not logger.flush(timeout_s=2) and logger.pending == 5 and logger.failures >= 1

    server.start()  # same port, same backend store
    assert logger.flush(timeout_s=60), logger.last_error
    assert logger.close() == 0
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(10))
