"""Drill: five `vidgen run` pipelines at once against one `mlflow server`.

Each pipeline is its own process with its own work dir and its own local Ray
(as five users on one machine would start them: `vidgen run` starts a local Ray
per process; Ray picks free ports and a session folder of its own for each, and
the steps' tasks are pointed at their own cluster through ``RAY_ADDRESS``,
workflows/runtime.py). They share one tracking server, one experiment and one
model registry. Each trains on its own generated data (``synth.seed``), so no
pipeline can reuse another's steps: every one runs all nine steps and registers
its own models.

Five local Rays plus five lean workflows on 2 cores: the starts are staggered by
a few seconds (Ray's start-up is the heaviest moment), and the runs overlap for
most of their length. Marked ``slow``: about 9-10 minutes on 2 cores (one such pipeline alone
takes ~2.3 minutes), memory of the five together (PSS) ~11 GiB at its peak.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from plumbing import PLUMBING, as_cli_args

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(1800)]

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"
PIPELINES = 5
STAGGER_S = 5.0
LEAN = [
    "synth.videos_per_class=3", "train_vae.steps=20", "train_vae.checkpoint_every=10", "train_vae.sample_every=0",
    "train_gan.steps=6", "train_gan.checkpoint_every=3", "train_gan.batch_size=4", "eval.max_test_clips=8", *PLUMBING,
]
STEPS = 9  # workflows/dag.py PIPELINE
MODELS = ("vidgen-vae", "vidgen-gan", "vidgen-probe")  # registry.model_prefix "vidgen"


class MemorySampler:
    """Peak memory of every process of the given sessions together: the sum of their PSS (shared
    pages split between the processes that map them, so nothing is counted twice), every 2 s."""

    def __init__(self, sids: list[int]) -> None:
        self.sids, self.peak_kb = sids, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from procs import session_pids

        while not self._stop.wait(2.0):
            total = 0
            for sid in self.sids:
                for pid in session_pids(sid):
                    try:
                        with open(f"/proc/{pid}/smaps_rollup") as f:
                            total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
                    except (OSError, ValueError, StopIteration):
                        pass
            self.peak_kb = max(self.peak_kb, total)

    def stop(self) -> float:
        """Stop sampling; the peak in GiB."""
        self._stop.set()
        self._thread.join(timeout=10)
        return self.peak_kb / 2**20


def test_five_pipelines_at_once_against_one_tracking_server(mlflow_server, spawn, tmp_path, monkeypatch, drill) -> None:
    from mlflow import MlflowClient
    from procs import VENV_BIN

    case = drill("5 pipelines at once against one mlflow server", "load",
                 f"{PIPELINES} `vidgen run` processes started {STAGGER_S:.0f} s apart, each with its own work dir "
                 "and local Ray, all tracking to one `mlflow server` (SQLite store), same experiment and registry",
                 "every process exits 0; every pipeline and step run FINISHED, none left RUNNING; each model "
                 f"gains exactly {PIPELINES} versions, one per pipeline; no 'database is locked'; the store "
                 "passes PRAGMA integrity_check")

    server = mlflow_server(tmp_path / "server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    procs, logs = [], []
    t0 = time.monotonic()
    for k in range(PIPELINES):
        if k:
            time.sleep(STAGGER_S)
        overrides = [*LEAN, f"synth.seed={k}", f"tracking.uri={server.url}"]
        cmd = [str(VENV_BIN / "vidgen"), "run", "-c", str(RECIPE), "-w", str(tmp_path / f"wd{k}"), *as_cli_args(overrides)]
        logs.append(tmp_path / f"run{k}.log")
        with open(logs[-1], "wb") as log:
            procs.append(spawn(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    sampler = MemorySampler([p.pid for p in procs])

    deadline = time.monotonic() + 1500
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    seconds = time.monotonic() - t0
    peak_gb = sampler.stop()
    consoles = [log.read_text(errors="replace") for log in logs]
    failed = {k: (code, consoles[k][-3000:]) for k, code in enumerate(codes) if code != 0}
    assert not failed, failed

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name("vidgen-tiny")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    pipelines = {r.info.run_id: r for r in runs if r.data.tags.get("vidgen.kind") == "pipeline"}
    steps = [r for r in runs if r.data.tags.get("vidgen.kind") == "step"]
    assert len(pipelines) == PIPELINES and len(runs) == PIPELINES * (STEPS + 1), (sorted(pipelines), len(runs))
    # Each console's first line names its pipeline run: "[vidgen] pipeline run <id> · tracking …".
    assert {c.splitlines()[0].split()[3] for c in consoles} == set(pipelines)
    assert [r.info.status for r in runs if r.info.status != "FINISHED"] == []
    per_pipeline = {pid: [s for s in steps if s.data.tags["mlflow.parentRunId"] == pid] for pid in pipelines}
    assert {pid: len(s) for pid, s in per_pipeline.items()} == dict.fromkeys(pipelines, STEPS)
    for pid, run in pipelines.items():  # every step ran in its own pipeline, none reused another's
        ran = {k: v for k, v in run.data.tags.items() if k.startswith("vidgen.step.")}
        assert len(ran) == STEPS and all(v.startswith("ran ") for v in ran.values()), ran
    # They did run at once: the last to start began before the first to finish ended.
    overlap_s = (min(r.info.end_time for r in pipelines.values()) - max(r.info.start_time for r in pipelines.values())) / 1000
    assert overlap_s > 0, overlap_s

    versions = {}
    for name in MODELS:
        found = client.search_model_versions(f"name = '{name}'")
        numbers = sorted(int(v.version) for v in found)
        owners = sorted(v.tags.get("pipeline_run_id", "") for v in found)
        assert numbers == list(range(1, PIPELINES + 1)), (name, numbers)
        assert owners == sorted(pipelines), (name, owners)  # one version per pipeline: no duplicate, none missing
        versions[name] = len(found)

    server.stop()  # the store at rest, then SQLite's own check
    with sqlite3.connect(server.root / "mlflow.db") as con:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok", integrity
    server_log = (server.root / "server.log").read_text(errors="replace")
    run_logs = [p.read_text(errors="replace") for k in range(PIPELINES) for p in (tmp_path / f"wd{k}" / "logs").glob("*.log")]
    assert len(run_logs) == PIPELINES
    for text in [*consoles, *run_logs, server_log]:
        assert "database is locked" not in text
    # 4xx are MLflow's own flow (a registered model or alias that does not exist yet); a 5xx would be
    # the store failing under the load, hidden by the clients' retries.
    errors = re.findall(r'"[A-Z]+ (\S+) HTTP/1\.1" (5\d\d)', server_log)
    assert errors == [], errors[:20]
    requests = len(re.findall(r'"[A-Z]+ \S+ HTTP/1\.1" \d{3}', server_log))

    finished = sum(r.info.status == "FINISHED" for r in runs)
    case.figure = (f"pipelines finished {codes.count(0)}/{PIPELINES}; runs FINISHED {finished}/{PIPELINES * (STEPS + 1)}, "
                   f"none RUNNING; registry versions {'+'.join(str(v) for v in versions.values())} "
                   f"(vae+gan+probe), duplicates 0; SQLite integrity ok; server answered {requests} requests, "
                   f"5xx 0; {seconds:.0f} s, all {PIPELINES} running at once for {overlap_s:.0f} s; memory of the "
                   f"{PIPELINES} (PSS) peaked at {peak_gb:.1f} GiB")
