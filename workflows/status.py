"""`vidgen status`: the DAG of the latest pipeline run in a work dir, step by step.

Per step: its dependencies, the state of the MLflow run it used (FINISHED,
RUNNING, FAILED, KILLED — runs of a killed driver are marked KILLED first, so
the table does not show a training that is no longer happening), the run id,
the duration, whether it was reused from an earlier run, and what running that
pipeline's config again would do (reuse or run). The config is the one the
pipeline run logged: the table describes what happened, whatever recipe or
``--set`` the user has at hand today.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vidgen_core.config import PipelineConfig
from vidgen_core.errors import UserError

from workflows import run_store as rs
from workflows.dag import PIPELINE, code_version, step_fingerprints
from workflows.liveness import KIND_TAG, reap_stale_runs


def _open(tracking_uri: str | None, workdir: Path) -> tuple[Any, str]:
    from mlflow import MlflowClient

    from vidgen_core.tracking.mlflow_setup import check_reachable, resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri, str(workdir))
    db = sqlite_path(uri)
    if db is not None and not Path(db).is_file():
        raise UserError(f"no MLflow store at '{db}': nothing has run in work dir '{workdir}' yet; start with `vidgen run`")
    check_reachable(uri)
    return MlflowClient(uri), uri


def _latest_in_workdir(client: Any, workdir: Path) -> Any:
    """The newest pipeline run of ``workdir`` in any experiment (recipes name their own experiments)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{KIND_TAG}` = 'pipeline'", order_by=["attributes.start_time DESC"],
        max_results=200,
    ) if experiments else []
    return next((r for r in runs if r.data.tags.get("vidgen.workdir") == str(workdir)), None)


def find_pipeline_run(workdir: Path, tracking_uri: str | None, run_id: str | None = None) -> tuple[str, str]:
    """``(tracking URI, pipeline run id)``: ``run_id`` if it is a pipeline run, else the latest in ``workdir``.

    Raises:
        UserError: no store, no such pipeline run, or none in ``workdir`` yet.
    """
    client, uri = _open(tracking_uri, workdir)
    if run_id is None:
        latest = _latest_in_workdir(client, workdir)
        if latest is None:
            raise UserError(f"no pipeline run for work dir '{workdir}' in the MLflow store at {uri} yet; start with `vidgen run`")
        return uri, latest.info.run_id
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow's "not found" has no type of its own
        raise UserError(f"no run '{run_id}' in the MLflow store at {uri}") from None
    if run.data.tags.get(KIND_TAG) != "pipeline":
        raise UserError(f"run '{run_id}' is not a pipeline run (it is a step's run); pass the pipeline run id")
    return uri, run_id


def logged_config(client: Any, run_id: str) -> PipelineConfig:
    """The resolved config a pipeline run logged (``config.json``), validated by today's code.

    Raises:
        UserError: the run has no readable config, or today's code rejects it.
    """
    import json
    import tempfile

    from pydantic import ValidationError

    try:
        with tempfile.TemporaryDirectory() as tmp:
            with open(client.download_artifacts(run_id, "config.json", tmp)) as f:
                raw = json.load(f)
        return PipelineConfig.model_validate(raw)
    except (OSError, ValueError, ValidationError) as exc:
        raise UserError(f"pipeline run {run_id} has no config this code can read ({type(exc).__name__}); "
                        "run `vidgen run` again") from None
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own types for a missing artifact
        raise UserError(f"pipeline run {run_id} has no readable config.json ({exc})") from None


def _duration(run: Any) -> float | None:
    start, end = run.info.start_time, run.info.end_time
    if start is None:
        return None
    return ((end if end else time.time() * 1000) - start) / 1000


def status_table(workdir: Path, tracking_uri: str | None = None) -> list[str]:
    """Lines of the status report (header, one row per step, footer).

    The steps' "next run" column compares with the config the latest pipeline
    run logged, not with whatever config the caller has at hand.

    Raises:
        UserError: no store / pipeline run yet, or an unreachable tracking server.
    """
    client, uri = _open(tracking_uri, workdir)
    latest = _latest_in_workdir(client, workdir)
    if latest is None:
        raise UserError(f"no pipeline run for work dir '{workdir}' in the MLflow store at {uri} yet; start with `vidgen run`")
    experiment_id = latest.info.experiment_id
    reaped = reap_stale_runs(client, experiment_id)
    if reaped:
        latest = client.get_run(latest.info.run_id)
    cfg = logged_config(client, latest.info.run_id)
    fps = step_fingerprints(cfg, code_version())
    w = max(len(", ".join(s.deps)) for s in PIPELINE) + 1
    lines = [
        f"pipeline run {latest.info.run_id}  {latest.info.status}  started "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(latest.info.start_time / 1000))}  "
        f"({_fmt_s(_duration(latest))})",
        f"tracking {uri} · experiment '{cfg.tracking.experiment}' · work dir {workdir}",
        "config: the one this pipeline run logged (its config.json)",
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
