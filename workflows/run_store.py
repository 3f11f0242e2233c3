"""The executor's view of MLflow: tags on step runs, and the queries that decide reuse.

Each step run carries its fingerprint, the fingerprints of the upstream runs it
consumed, and (once FINISHED) its JSON outputs. A pipeline run carries, per
step, ``ran <run id>`` or ``reused <run id>``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

FP_TAG = "vidgen.fingerprint"
STEP_TAG = "vidgen.step"
OUTPUTS_TAG = "vidgen.outputs"
UPSTREAM_TAG = "vidgen.upstream"  # JSON {dep: fingerprint} of the upstream runs consumed
RESUMES_TAG = "vidgen.resumes"  # an interrupted run of the same fingerprint this one continues
PIPELINE_TAG = "vidgen.pipeline_run_id"


def pipeline_step_tag(step: str) -> str:
    """Tag on the pipeline run: ``ran <run id>`` or ``reused <run id>``."""
    return f"vidgen.step.{step}"


def outputs_exist(outputs: dict[str, Any]) -> bool:
    """Local output folders a reused run points at must still be there."""
    for key, value in outputs.items():
        if key.endswith("_dir") and isinstance(value, str) and "://" not in value and not os.path.isdir(value):
            return False
    return True


def _finished_outputs(run: Run) -> dict[str, Any] | None:
    raw = run.data.tags.get(OUTPUTS_TAG)
    if raw is None:
        return None
    outputs = json.loads(raw)
    return outputs if outputs_exist(outputs) else None


def find_reusable(client: MlflowClient, experiment_id: str, fp: str) -> tuple[Run, dict[str, Any]] | None:
    """Newest FINISHED step run with this fingerprint whose outputs still exist, or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{FP_TAG}` = '{fp}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    for run in runs:
        outputs = _finished_outputs(run)
        if outputs is not None:
            return run, outputs
    return None


def find_compatible(
    client: MlflowClient, experiment_id: str, step: str, upstream: dict[str, str]
) -> tuple[Run, dict[str, Any]] | None:
    """Newest FINISHED run of ``step`` that consumed exactly ``upstream``, whatever its own fingerprint.

    Used by ``--from``: steps before the named one are taken from their latest
    runs even when their fingerprint moved (a code edit that does not concern
    them), as long as the chain of upstream runs is consistent.
    """
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{STEP_TAG}` = '{step}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    for run in runs:
        raw = run.data.tags.get(UPSTREAM_TAG)
        consumed = json.loads(raw) if raw is not None else ({} if not upstream else None)
        if consumed != upstream or FP_TAG not in run.data.tags:
            continue
        outputs = _finished_outputs(run)
        if outputs is not None:
            return run, outputs
    return None


def find_interrupted(client: MlflowClient, experiment_id: str, fp: str) -> str | None:
    """Newest KILLED/FAILED/RUNNING run with this fingerprint (what a re-run continues), or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{FP_TAG}` = '{fp}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def latest_pipeline_run(client: MlflowClient, experiment_id: str, workdir: str | None = None) -> Run | None:
    """The most recently started pipeline run (in ``workdir`` when given), or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string="tags.`vidgen.kind` = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    for run in runs:
        if workdir is None or run.data.tags.get("vidgen.workdir") == workdir:
            return run
    return None
