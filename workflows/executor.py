"""A small DAG executor: ready steps run concurrently as Ray tasks, tracked in MLflow.

One parent MLflow run per invocation, one child run per executed step, tagged
with the step's fingerprint. A FINISHED run with the same fingerprint (and
whose output folders still exist) is reused instead of recomputed, so a second
``vidgen run`` with nothing changed trains nothing, and a run killed half-way
picks up after its last finished step.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vidgen_core.config import PipelineConfig, config_dict, fingerprint
from vidgen_core.errors import UserError

from workflows.dag import PIPELINE, STEP_NAMES, code_version, downstream_of, step_fingerprints
from workflows.runtime import init_ray
from workflows.steps import StepContext

FP_TAG = "vidgen.fingerprint"
STEP_TAG = "vidgen.step"
OUTPUTS_TAG = "vidgen.outputs"


class StepFailed(RuntimeError):
    """A step raised; the message names the step and the cause."""


@dataclass
class StepRecord:
    name: str
    fingerprint: str
    run_id: str
    reused: bool
    duration_s: float
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    pipeline_run_id: str
    tracking_uri: str
    experiment_id: str
    steps: dict[str, StepRecord]
    duration_s: float

    def outputs(self, step: str) -> dict[str, Any]:
        return self.steps[step].outputs


def _execute_step(name: str, cfg_json: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Body of a step's Ray task: rebuild the typed config, run the step function."""
    cfg = PipelineConfig.model_validate(cfg_json)
    step = next(s for s in PIPELINE if s.name == name)
    outputs = step.fn(cfg, inputs, ctx)
    json.dumps(outputs)  # a step's outputs must be JSON-able; fail here, not in the next step
    return outputs


def _outputs_exist(outputs: dict[str, Any]) -> bool:
    """Local output folders a reused run points at must still be there."""
    for key, value in outputs.items():
        if key.endswith("_dir") and isinstance(value, str) and "://" not in value and not os.path.isdir(value):
            return False
    return True


def find_reusable(client, experiment_id: str, fp: str):
    """Newest FINISHED step run with this fingerprint whose outputs still exist, or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{FP_TAG}` = '{fp}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    for run in runs:
        raw = run.data.tags.get(OUTPUTS_TAG)
        if raw is None:
            continue
        outputs = json.loads(raw)
        if _outputs_exist(outputs):
            return run, outputs
    return None


def _flat_params(cfg: PipelineConfig) -> dict[str, str]:
    flat: dict[str, str] = {}
    for section, values in config_dict(cfg).items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return flat


def run_pipeline(
    cfg: PipelineConfig,
    workdir: Path,
    force: list[str] | None = None,
    echo: Callable[[str], None] = print,
) -> PipelineResult:
    """Run the whole DAG; returns each step's record. Raises StepFailed or UserError."""
    import mlflow
    import ray
    from mlflow.entities import Param
    from ray.exceptions import RayTaskError

    from vidgen_core.tracking.mlflow_setup import (
        default_artifact_location,
        get_or_create_experiment,
        resolve_tracking_uri,
    )

    unknown = [s for s in force or [] if s not in STEP_NAMES]
    if unknown:
        raise UserError(f"unknown step '{unknown[0]}' for --force; steps are: {', '.join(STEP_NAMES)}")
    forced = downstream_of(list(force or []))

    t0 = time.time()
    tracking_uri = resolve_tracking_uri(cfg.tracking.uri, str(workdir))
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = get_or_create_experiment(
        client, cfg.tracking.experiment, default_artifact_location(tracking_uri, str(workdir))
    )
    fps = step_fingerprints(cfg, code_version())

    parent = client.create_run(
        experiment_id,
        run_name=f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={"vidgen.kind": "pipeline", "vidgen.config_hash": fingerprint(cfg), "vidgen.workdir": str(workdir)},
    )
    pid = parent.info.run_id
    params = [Param(k, v[:6000]) for k, v in _flat_params(cfg).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(pid, params=params[i : i + 100])
    client.log_dict(pid, config_dict(cfg), "config.json")
    echo(f"[vidgen] pipeline run {pid} · tracking {tracking_uri}")

    init_ray(cfg.ray)
    remote_step = ray.remote(max_calls=1)(_execute_step)  # fresh process per step: no leaked state
    records: dict[str, StepRecord] = {}
    pending: dict[Any, tuple[str, str, float]] = {}  # ref -> (step, run_id, start)
    started: set[str] = set()
    cfg_json = config_dict(cfg)

    def finish_parent(status: str) -> None:
        client.set_terminated(pid, status=status)

    try:
        while len(records) < len(PIPELINE):
            progressed = False
            for step in PIPELINE:
                if step.name in started or not all(d in records for d in step.deps):
                    continue
                started.add(step.name)
                progressed = True
                fp = fps[step.name]
                found = None if step.name in forced else find_reusable(client, experiment_id, fp)
                if found is not None:
                    run, outputs = found
                    records[step.name] = StepRecord(step.name, fp, run.info.run_id, True, 0.0, outputs)
                    client.set_tag(pid, f"vidgen.step.{step.name}", f"reused {run.info.run_id}")
                    echo(f"[vidgen] {step.name:<10} reused  run {run.info.run_id} (fingerprint {fp})")
                    continue
                out_dir = str(workdir / "steps" / f"{step.name}-{fp}")
                child = client.create_run(
                    experiment_id,
                    run_name=step.name,
                    tags={"mlflow.parentRunId": pid, STEP_TAG: step.name, FP_TAG: fp, "vidgen.kind": "step"},
                )
                ctx = StepContext(
                    name=step.name, workdir=str(workdir), out_dir=out_dir, tracking_uri=tracking_uri,
                    run_id=child.info.run_id, pipeline_run_id=pid, fingerprint=fp,
                    upstream_fingerprints={d: fps[d] for d in step.deps},
                )
                os.makedirs(out_dir, exist_ok=True)
                inputs = {d: records[d].outputs for d in step.deps}
                ref = remote_step.options(num_cpus=step.num_cpus, name=f"vidgen:{step.name}").remote(
                    step.name, cfg_json, inputs, ctx
                )
                pending[ref] = (step.name, child.info.run_id, time.time())
                client.set_tag(pid, f"vidgen.step.{step.name}", f"ran {child.info.run_id}")
                echo(f"[vidgen] {step.name:<10} started run {child.info.run_id}")
            if progressed or not pending:
                continue
            ready, _ = ray.wait(list(pending), num_returns=1)
            name, run_id, start = pending.pop(ready[0])
            try:
                outputs = ray.get(ready[0])
            except RayTaskError as exc:
                client.set_terminated(run_id, status="FAILED")
                cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
                _cancel(ray, client, pending)
                finish_parent("FAILED")
                if isinstance(cause, UserError):
                    raise UserError(f"step {name}: {cause}") from None
                raise StepFailed(f"step {name} failed: {type(cause).__name__}: {cause}") from cause
            duration = time.time() - start
            client.set_tag(run_id, OUTPUTS_TAG, json.dumps(outputs))
            client.log_dict(run_id, outputs, "outputs.json")
            client.set_terminated(run_id, status="FINISHED")
            records[name] = StepRecord(name, fps[name], run_id, False, duration, outputs)
            echo(f"[vidgen] {name:<10} finished in {duration:.1f}s")
    except KeyboardInterrupt:
        _cancel(ray, client, pending)
        finish_parent("KILLED")
        raise
    client.log_metric(pid, "pipeline_duration_s", time.time() - t0)
    finish_parent("FINISHED")
    return PipelineResult(pid, tracking_uri, experiment_id, records, time.time() - t0)


def _cancel(ray, client, pending: dict[Any, tuple[str, str, float]]) -> None:
    """Stop steps still running and mark their runs KILLED."""
    for ref, (_, run_id, _) in list(pending.items()):
        ray.cancel(ref, force=True)
        client.set_terminated(run_id, status="KILLED")
    pending.clear()
