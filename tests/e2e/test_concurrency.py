"""Two pipelines at once on one fresh SQLite store: both finish, nothing is locked or corrupted."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from plumbing import PLUMBING

from vidgen_core.config import load_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"
SMALL = ["synth.videos_per_class=3", "train_vae.steps=8", "train_gan.steps=2", "eval.max_test_clips=16", *PLUMBING]


def test_two_pipelines_on_one_store(ray_cluster, spawn, tmp_path):
    import mlflow

    from procs import VENV_BIN
    from workflows.executor import run_pipeline

    db = tmp_path / "shared" / "mlflow.db"
    uri = f"sqlite:///{db}"
    # Different VAE seeds: two genuinely different pipelines (each trains and registers its own pair).
    sets_a = [*SMALL, f"tracking.uri={uri}", "train_vae.seed=1"]
    sets_b = [*SMALL, f"tracking.uri={uri}", "train_vae.seed=2"]
    cmd = [str(VENV_BIN / "vidgen"), "run", "-c", str(RECIPE), "-w", str(tmp_path / "a")]
    for item in sets_a:
        cmd += ["--set", item]
    log_path = tmp_path / "a.log"
    with open(log_path, "wb") as log:
        proc = spawn(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        lines: list[str] = []
        result_b = run_pipeline(load_config(RECIPE, sets_b), tmp_path / "b", echo=lines.append)
        assert proc.wait(timeout=500) == 0, log_path.read_text()[-3000:]
    log_a = log_path.read_text()
    assert "database is locked" not in log_a

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("vidgen-tiny")
    pipelines = client.search_runs([exp.experiment_id], "tags.`vidgen.kind` = 'pipeline'")
    assert sorted(r.info.status for r in pipelines) == ["FINISHED", "FINISHED"]
    assert result_b.pipeline_run_id in {r.info.run_id for r in pipelines}
    steps = client.search_runs([exp.experiment_id], "tags.`vidgen.kind` = 'step'")
    assert {r.info.status for r in steps} == {"FINISHED"}
    for name in ("vidgen-vae", "vidgen-gan"):
        assert len(client.search_model_versions(f"name = '{name}'")) == 2
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
