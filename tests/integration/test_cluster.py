"""The documented cluster path, executed: a real two-node Ray cluster with token auth,
a real `mlflow server`, and `vidgen submit` as the README shows it. The workflow's
run is also the suite's check that a pipeline logs, registers and loads through a
tracking server alone (SQLite backend, proxied artifacts).

The cluster: ``ray start --head`` (1 CPU, custom resource ``head_pool``) and a
second ``ray start --address=…`` (1 CPU, ``worker_pool``), each with its own temp
dir and ports (tests/raynodes.py); both are stopped by stopping their own
sessions. Skip locally with ``pytest -m "not cluster"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clusterjobs import LEAN, MLFLOW_PASSWORD, cluster_and_server
from clusterjobs import job_env as _env
from clusterjobs import run_vidgen as _vidgen
from raynodes import TwoNodeCluster

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The cluster and the MLflow server, shared by this module's tests."""
    with cluster_and_server(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(stack) -> TwoNodeCluster:
    return stack[0]


@pytest.fixture(scope="module")
def server(stack):
    return stack[1]


def _one_line_error(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidgen: error: "), proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def test_the_job_api_refuses_a_request_without_the_token(cluster: TwoNodeCluster, server, tmp_path: Path) -> None:
    status, body = cluster.get("/api/jobs/", headers={})
    assert status == 401, body
    status, _ = cluster.get("/api/jobs/", headers={"Authorization": "Bearer not-the-token"})
    assert status == 403
    proc = _vidgen(["submit", "--", *LEAN, "--workdir", str(tmp_path / "wd"), "--set", "storage.shared=true"],
                   _env(cluster, server.url, token=False), timeout=120)
    _one_line_error(proc, "refused the request", "RAY_AUTH_TOKEN_PATH")


def test_storage_one_node_cannot_see_is_refused_at_submit_time(cluster: TwoNodeCluster, server, tmp_path: Path) -> None:
    wd = str(tmp_path / "wd")
    no_server = _vidgen(["submit", "--", *LEAN, "--workdir", wd, "--set", "storage.shared=true"], _env(cluster, None), 120)
    _one_line_error(no_server, "2 nodes", "SQLite", "MLFLOW_TRACKING_URI")
    local = _vidgen(["submit", "--", *LEAN, "--workdir", wd], _env(cluster, server.url), 120)
    _one_line_error(local, "2 nodes", "node-local", "storage.shared=true")
    assert not Path(wd).exists()
    assert _vidgen(["jobs"], _env(cluster, None), 60).stdout.strip() == "no jobs on this cluster"


def _versions(tracking_uri: str, name: str) -> int:
    from mlflow import MlflowClient

    return len(MlflowClient(tracking_uri).search_model_versions(f"name = '{name}'"))


def test_the_tiny_workflow_runs_on_both_nodes(cluster: TwoNodeCluster, server, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    before = {m: _versions(server.url, m) for m in ("vidgen-vae", "vidgen-gan")}
    wd = tmp_path / "shared-wd"  # one machine: every node sees it, as an NFS mount would be seen
    # Pin one step to each node group (ray.step_resources): work provably spreads over both nodes.
    pins = "ray.step_resources={synth: {head_pool: 1}, train_judge: {worker_pool: 1}}"
    t0 = time.monotonic()
    proc = _vidgen(["submit", "--", *LEAN, "--workdir", str(wd), "--set", "storage.shared=true", "--set", pins],
                   _env(cluster, server.url))
    elapsed = time.monotonic() - t0
    print(f"vidgen submit: {elapsed:.0f}s, exit {proc.returncode}")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    first = proc.stdout.splitlines()[0]
    assert first.startswith("[vidgen] submitted job raysubmit_"), first
    job_id = first.split()[3]
    assert f"[vidgen] job {job_id} SUCCEEDED" in proc.stdout
    assert "registered vidgen-vae version" in proc.stdout  # the job's own summary, followed live

    jobs = _vidgen(["jobs"], _env(cluster, None), 60)
    assert jobs.returncode == 0 and any(job_id in line and "SUCCEEDED" in line for line in jobs.stdout.splitlines()), jobs.stdout

    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name("vidgen-tiny")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    steps = {r.data.tags["vidgen.step"]: r for r in runs if r.data.tags.get("vidgen.kind") == "step"}
    nodes = cluster.node_ids()
    assert steps["synth"].data.tags["vidgen.node_id"] == nodes["head"]
    assert steps["train_judge"].data.tags["vidgen.node_id"] == nodes["worker"]
    assert {r.data.tags.get("vidgen.node_id") for r in steps.values()} <= set(nodes.values())
    assert all(r.info.status == "FINISHED" for r in steps.values())
    after = {m: _versions(server.url, m) for m in before}
    assert after == {m: n + 1 for m, n in before.items()}, (before, after)
    listed = _vidgen(["models", "list", "--tracking-uri", server.url], _env(cluster, None), 120)  # the README's command
    assert listed.returncode == 0 and "vidgen-vae" in listed.stdout and "vidgen-gan" in listed.stdout, listed.stderr

    # No secret anywhere a user or a log reader sees: params, tags, logged text files, the job's logs.
    token = cluster.token_path.read_text()
    seen = [proc.stdout, proc.stderr, jobs.stdout]
    for r in runs:
        seen += [json.dumps(r.data.params), json.dumps(r.data.tags)]
    pipeline = next(r for r in runs if r.data.tags.get("vidgen.kind") == "pipeline")
    seen += [Path(p).read_text(errors="replace") for p in (wd / "logs").glob("*.log")]
    seen.append(json.dumps(client.get_run(pipeline.info.run_id).data.to_dictionary()))
    for secret in (token, MLFLOW_PASSWORD):
        assert not any(secret in text for text in seen), "a secret leaked into params, tags, logs or job output"

    # Everything went through the server (proxied artifacts): nothing of MLflow's in the work dir, the
    # model files on the server, and a fresh process that knows only the server's URL loads the new VAE.
    assert not (wd / "mlflow.db").exists() and not (wd / "mlartifacts").exists()
    stored = {p.name for p in (server.root / "artifacts").rglob("*") if p.is_file()}
    assert {"weights.safetensors", "MLmodel", "_manifest.json", "outputs.json"} <= stored, stored
    version = max(client.search_model_versions("name = 'vidgen-vae'"), key=lambda v: int(v.version))
    assert version.tags["pipeline_run_id"] == pipeline.info.run_id
    shard_dir = str(next(wd.rglob("_manifest.json")).parent)
    script = textwrap.dedent(
        f"""
        import mlflow, numpy as np
        from vidgen_core.data.readers import load_clips
        clips, _ = load_clips({shard_dir!r}, "test", limit=2)
        recon = mlflow.pyfunc.load_model("models:/vidgen-vae/{version.version}").predict(clips)
        assert recon.shape == clips.shape and recon.dtype == np.uint8
        print("OK")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=server.url, HOME=str(tmp_path))
    loaded = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.strip().endswith("OK"), loaded.stderr[-3000:]
