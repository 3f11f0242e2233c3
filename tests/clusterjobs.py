"""What the cluster tests share: the cluster and server they run on, the lean tiny recipe, a submitter's
environment, `vidgen` as a subprocess.

Used by tests/integration/test_cluster.py (the documented path) and
its node-loss test (the same job with the second node killed mid-training).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from plumbing import PLUMBING, as_cli_args
from procs import MlflowServer
from raynodes import TwoNodeCluster

ROOT = Path(__file__).resolve().parents[1]
# The tiny recipe, leaner: the point here is where work runs, not model quality.
LEAN = ["--config", "workflows/configs/tiny.yaml",
        "--set", "synth.videos_per_class=3", "--set", "train_vae.steps=20", "--set", "train_vae.checkpoint_every=10",
        "--set", "train_vae.sample_every=0", "--set", "train_gan.steps=6", "--set", "train_gan.checkpoint_every=3",
        "--set", "eval.max_test_clips=8", "--set", "train_gan.batch_size=4", *as_cli_args(PLUMBING)]
# Secrets the submitter holds: none may surface in params, tags, logged text or job logs.
MLFLOW_PASSWORD = "mlflow-pw-" + secrets.token_hex(8)


@contextlib.contextmanager
def cluster_and_server(tmp_path_factory: pytest.TempPathFactory,
                       **cluster_options: Any) -> Iterator[tuple[TwoNodeCluster, MlflowServer]]:
    """A running two-node cluster with token auth (``cluster_options`` go to TwoNodeCluster) and `mlflow server`.

    Both are started side by side, as each takes tens of seconds on 2 busy cores, and
    both are stopped on exit, whether the start or the test failed.
    """
    cluster = TwoNodeCluster(tmp_path_factory.mktemp("ray-cluster"), token=secrets.token_hex(16), **cluster_options)
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        with ThreadPoolExecutor(1) as pool:
            started = pool.submit(server.start, 300.0)
            cluster.start()
            started.result()
        yield cluster, server
    finally:
        cluster.stop()
        server.stop()


def job_env(cluster: TwoNodeCluster, tracking_uri: str | None, token: bool = True) -> dict[str, str]:
    """A submitter's environment: the cluster's address, its token file, the tracking server (and a password)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS", "RAY_AUTH"))}
    env["RAY_ADDRESS"] = cluster.address
    if token:
        env["RAY_AUTH_TOKEN_PATH"] = str(cluster.token_path)  # as the README says: the only thing a submitter sets
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
        env["MLFLOW_TRACKING_USERNAME"] = "vidgen"
        env["MLFLOW_TRACKING_PASSWORD"] = MLFLOW_PASSWORD  # the test server ignores it; it must not leak
    return env


def vidgen_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "workflows.cli", *args]


def run_vidgen(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(vidgen_command(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
