"""`vidgen status`: the DAG of the latest pipeline run in a work dir, step by step.

Per step: its dependencies, the state of the MLflow run it used (FINISHED,
RUNNING, FAILED, KILLED — runs of a killed driver are marked KILLED first, so
the table does not show a training that is no longer happening), the run id,
the duration, whether it was reused from an earlier run, and what the next
``vidgen run`` with this config would do (reuse or run).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vidgen_core.config import PipelineConfig
from vidgen_core.errors import UserError

from workflows import run_store as rs
from workflows.dag import PIPELINE, code_version, step_fingerprints
from workflows.liveness import reap_stale_runs


def _open(cfg: PipelineConfig, workdir: Path) -> tuple[Any, str, str]:
    from mlflow import MlflowClient

    from vidgen_core.tracking.mlflow_setup import check_reachable, resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(cfg.tracking.uri, str(workdir))
    db = sqlite_path(uri)
    if db is not None and not Path(db).is_file():
        raise UserError(f"no MLflow store at '{db}': nothing has run in work dir '{workdir}' yet; start with `vidgen run`")
    check_reachable(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        raise UserError(f"no MLflow experiment '{cfg.tracking.experiment}' at {uri}: nothing has run with this config yet")
    return client, exp.experiment_id, uri


def _duration(run: Any) -> float | None:
    start, end = run.info.start_time, run.info.end_time
    if start is None:
        return None
    return ((end if end else time.time() * 1000) - start) / 1000


def status_table(cfg: PipelineConfig, workdir: Path) -> list[str]:
    """Lines of the status report (header, one row per step, footer).

    Raises:
        UserError: no store / experiment yet, or an unreachable tracking server.
    """
    client, experiment_id, uri = _open(cfg, workdir)
    reaped = reap_stale_runs(client, experiment_id)
    latest = rs.latest_pipeline_run(client, experiment_id, str(workdir))
    if latest is None:
        raise UserError(f"no pipeline run for work dir '{workdir}' in experiment '{cfg.tracking.experiment}' yet")
    fps = step_fingerprints(cfg, code_version())
    w = max(len(", ".join(s.deps)) for s in PIPELINE) + 1
    lines = [
        f"pipeline run {latest.info.run_id}  {latest.info.status}  started "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(latest.info.start_time / 1000))}  "
        f"({_fmt_s(_duration(latest))})",
        f"tracking {uri} · work dir {workdir}",
        "",
        f"{'step':<10} {'depends on':<{w}} {'state':<11} {'run id':<32} {'duration':>9}  {'reused':<6}  next run",
    ]
    for step in PIPELINE:
        how = latest.data.tags.get(rs.pipeline_step_tag(step.name), "")
        state, run_id, duration, reused = "not started", "-", "-", "-"
        if how:
            verb, run_id = how.split(" ", 1)
            run = client.get_run(run_id)
            state, reused = run.info.status, "yes" if verb == "reused" else "no"
            duration = "-" if verb == "reused" else _fmt_s(_duration(run))
        elif latest.info.status == "RUNNING":
            state = "waiting"
        nxt = "reuse" if rs.find_reusable(client, experiment_id, fps[step.name]) else "run"
        deps = ", ".join(step.deps) or "-"
        lines.append(f"{step.name:<10} {deps:<{w}} {state:<11} {run_id:<32} {duration:>9}  {reused:<6}  {nxt}")
    if reaped:
        lines.append(f"(marked {len(reaped)} run(s) of a killed driver KILLED)")
    return lines


def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"
