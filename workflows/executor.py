"""A small DAG executor: ready steps run concurrently as Ray tasks, tracked in MLflow.

One parent MLflow run per invocation, one child run per executed step, tagged
with the step's fingerprint (see :mod:`workflows.dag`). Per step, in order:

1. ``--force``/``--from`` named it (or a step upstream of it): run it;
2. a FINISHED run with the same fingerprint whose outputs still exist: reuse it;
3. ``--from`` named another step and this one is not downstream of it: reuse
   its newest run that consumed the same upstream runs, even if its own
   fingerprint moved (e.g. after a code edit that does not concern it);
4. otherwise run it. A run with the same fingerprint that was killed or failed
   is continued: the step's output folder and Ray Train run name derive from
   the fingerprint, so training restarts from its last checkpoint.

Ray is started only when a step actually runs: a fully cached pipeline
finishes in seconds. Runs left RUNNING by a killed driver are marked KILLED
first (:mod:`workflows.liveness`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vidgen_core.config import PipelineConfig, config_dict, fingerprint
from vidgen_core.errors import UserError
from vidgen_core.storage import redact

from workflows import run_store as rs
from workflows.dag import PIPELINE, Step, check_pipeline, code_version, downstream_of, step_fingerprint
from workflows.liveness import DRIVER_TAG, KIND_TAG, driver_id, live_pipeline_in, reap_stale_runs
from workflows.runtime import init_ray, step_env
from workflows.steps import StepContext, earlier_outputs, step_out_dir

# Re-exported: tests and older callers import these from here.
FP_TAG, STEP_TAG, OUTPUTS_TAG, find_reusable = rs.FP_TAG, rs.STEP_TAG, rs.OUTPUTS_TAG, rs.find_reusable

log = logging.getLogger(__name__)


class StepFailed(RuntimeError):
    """A step raised; the message names the step and the cause.

    Attributes:
        step: the step's name.
        detail: the full story for the log file (the remote traceback, as Ray gives it).
    """

    def __init__(self, message: str, step: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.detail = detail


class Monitor:
    """Hooks for whoever shows the run (the CLI's console); this base does nothing.

    ``tick`` is called a few times a second while steps run, with the running
    steps (MLflow run id -> (step name, start time)) and the progress board.
    """

    def pipeline_started(self, pipeline_run_id: str) -> None:
        """The parent MLflow run exists."""

    def ray_started(self) -> None:
        """Ray is up in this process (the first step is about to run)."""

    def tick(self, running: dict[str, tuple[str, float]], board: dict[str, dict[str, Any]]) -> None:
        """Steps are running; ``board`` holds their latest progress."""


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


NODE_TAG = "vidgen.node_id"  # the Ray node a step's task ran on


def _execute_step(fn: Callable[..., dict[str, Any]], cfg_json: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Body of a step's Ray task: record where it runs, rebuild the typed config, run the step function."""
    import ray

    ctx.client().set_tag(ctx.run_id, NODE_TAG, ray.get_runtime_context().get_node_id())
    cfg = PipelineConfig.model_validate(cfg_json)
    outputs = fn(cfg, inputs, ctx)
    json.dumps(outputs)  # a step's outputs must be JSON-able; fail here, not in the next step
    return outputs


def _flat_params(cfg: PipelineConfig) -> dict[str, str]:
    flat: dict[str, str] = {}
    for section, values in config_dict(cfg).items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = redact(json.dumps(value) if isinstance(value, (list, dict)) else str(value))
    return flat


def _check_names(option: str, names: list[str], pipeline: tuple[Step, ...]) -> None:
    known = [s.name for s in pipeline]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown step '{unknown[0]}' for {option}; steps are: {', '.join(known)}")


def run_pipeline(
    cfg: PipelineConfig,
    workdir: Path,
    force: list[str] | None = None,
    echo: Callable[[str], None] = print,
    *,
    from_steps: list[str] | None = None,
    pipeline: tuple[Step, ...] = PIPELINE,
    monitor: Monitor | None = None,
) -> PipelineResult:
    """Run the DAG; returns each step's record. Raises StepFailed or UserError.

    Args:
        force: steps to recompute although a finished run exists (and everything downstream).
        from_steps: resume the pipeline at these steps: they and everything downstream
            run; every other step is reused from its newest compatible run.
        pipeline: the steps, in topological order (tests use small DAGs of their own).
        monitor: told when the run starts and, while steps run, their progress.
    """
    from vidgen_core.tracking.mlflow_setup import open_store, resolve_tracking_uri, store_lock

    check_pipeline(pipeline)
    _check_names("--force", list(force or []), pipeline)
    _check_names("--from", list(from_steps or []), pipeline)
    _check_names("ray.step_resources", list(cfg.ray.step_resources), pipeline)
    t0 = time.time()
    tracking_uri = resolve_tracking_uri(cfg.tracking.uri, str(workdir))
    client, experiment_id = open_store(tracking_uri, cfg.tracking.experiment, workdir)
    for run_id in reap_stale_runs(client, experiment_id):
        echo(f"[vidgen] marked run {run_id} KILLED: its driver is gone")
    driver = driver_id()
    with store_lock(tracking_uri):  # check-then-create: two drivers starting at once must not both pass
        other = live_pipeline_in(client, experiment_id, str(workdir))
        if other is not None:
            raise UserError(
                f"another vidgen run (pipeline run {other}) is using work dir '{workdir}'; "
                "wait for it to finish or pass another --workdir"
            )
        parent = client.create_run(
            experiment_id,
            run_name=f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={KIND_TAG: "pipeline", "vidgen.config_hash": fingerprint(cfg), "vidgen.workdir": str(workdir),
                  DRIVER_TAG: driver},
        )
    forced = downstream_of(list(force or []) + list(from_steps or []), pipeline)
    # --from: every step outside the named steps' downstream may come from an older run.
    relaxed = {s.name for s in pipeline} - forced if from_steps else set()
    monitor = monitor or Monitor()
    monitor.pipeline_started(parent.info.run_id)
    run = _PipelineRun(
        cfg, workdir, pipeline, client, experiment_id, tracking_uri, parent.info.run_id, driver, echo,
        forced=forced, relaxed=relaxed, monitor=monitor,
    )
    _log_config(client, run.pid, cfg)
    echo(f"[vidgen] pipeline run {run.pid} · tracking {redact(tracking_uri)}")
    try:
        run.loop()
    except KeyboardInterrupt:
        run.cancel()
        client.set_terminated(run.pid, status="KILLED")
        raise
    except BaseException:
        run.cancel()
        client.set_terminated(run.pid, status="FAILED")
        raise
    client.log_metric(run.pid, "pipeline_duration_s", time.time() - t0)
    client.set_terminated(run.pid, status="FINISHED")
    return PipelineResult(run.pid, tracking_uri, experiment_id, run.records, time.time() - t0)


def _log_config(client: Any, pid: str, cfg: PipelineConfig) -> None:
    from mlflow.entities import Param

    params = [Param(k, v[:6000]) for k, v in _flat_params(cfg).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(pid, params=params[i : i + 100])
    client.log_dict(pid, config_dict(cfg), "config.json")


class _PipelineRun:
    """State of one invocation: which steps are done, which Ray tasks are in flight."""

    def __init__(self, cfg: PipelineConfig, workdir: Path, pipeline: tuple[Step, ...], client: Any,
                 experiment_id: str, tracking_uri: str, pid: str, driver: str, echo: Callable[[str], None],
                 *, forced: set[str], relaxed: set[str], monitor: Monitor) -> None:
        self.cfg, self.workdir, self.pipeline, self.client = cfg, workdir, pipeline, client
        self.experiment_id, self.tracking_uri, self.pid, self.driver, self.echo = experiment_id, tracking_uri, pid, driver, echo
        self.forced, self.relaxed = forced, relaxed
        self.code = code_version()
        self.cfg_json = config_dict(cfg)
        self.records: dict[str, StepRecord] = {}
        self.pending: dict[Any, tuple[str, str, str, float]] = {}  # ref -> (step, run_id, fp, start)
        self.started: set[str] = set()
        self.remote = None  # the Ray remote function, created when the first step runs
        self.monitor = monitor
        self.board = None  # the progress board actor (vidgen_core.progress), with Ray

    def loop(self) -> None:
        while len(self.records) < len(self.pipeline):
            progressed = False
            for step in self.pipeline:
                if step.name not in self.started and all(d in self.records for d in step.deps):
                    self.started.add(step.name)
                    self._start(step)  # reused (a new record) or launched: either way, look again
                    progressed = True
            if progressed or not self.pending:
                continue
            self._collect_one()

    def _upstream(self, step: Step) -> dict[str, str]:
        return {d: self.records[d].fingerprint for d in step.deps}

    def _start(self, step: Step) -> None:
        """Reuse ``step`` (a record now) or launch it (a pending Ray task)."""
        upstream = self._upstream(step)
        fp = step_fingerprint(step, self.cfg, upstream, self.code)
        found = None
        if step.name not in self.forced:
            found = rs.find_reusable(self.client, self.experiment_id, fp)
            if found is None and step.name in self.relaxed:
                found = rs.find_compatible(self.client, self.experiment_id, step.name, upstream)
        if found is not None:
            prev, outputs = found
            fp = prev.data.tags[rs.FP_TAG]
            self.records[step.name] = StepRecord(step.name, fp, prev.info.run_id, True, 0.0, outputs)
            self.client.set_tag(self.pid, rs.pipeline_step_tag(step.name), f"reused {prev.info.run_id}")
            self.echo(f"[vidgen] {step.name:<10} reused  run {prev.info.run_id} (fingerprint {fp})")
            return
        self._launch(step, fp, upstream)

    def _launch(self, step: Step, fp: str, upstream: dict[str, str]) -> None:
        import ray

        tags = {"mlflow.parentRunId": self.pid, rs.STEP_TAG: step.name, rs.FP_TAG: fp, KIND_TAG: "step",
                rs.UPSTREAM_TAG: json.dumps(upstream, sort_keys=True), rs.PIPELINE_TAG: self.pid,
                DRIVER_TAG: self.driver}
        if step.name in self.forced:
            # Recompute means from scratch: not resumed from the earlier run's checkpoints or outputs.
            for folder in earlier_outputs(str(self.workdir), step.name, fp):
                shutil.rmtree(folder, ignore_errors=True)
            interrupted = None
        else:
            interrupted = rs.find_interrupted(self.client, self.experiment_id, fp)
        if interrupted is not None:
            tags[rs.RESUMES_TAG] = interrupted
        child = self.client.create_run(self.experiment_id, run_name=step.name, tags=tags)
        out_dir = step_out_dir(str(self.workdir), step.name, fp)
        ctx = StepContext(
            name=step.name, workdir=str(self.workdir), out_dir=out_dir, tracking_uri=self.tracking_uri,
            run_id=child.info.run_id, pipeline_run_id=self.pid, fingerprint=fp, upstream_fingerprints=upstream,
            code_version=self.code,
        )
        os.makedirs(out_dir, exist_ok=True)
        if self.remote is None:
            from vidgen_core.progress import start_board

            local = not (self.cfg.ray.address or os.environ.get("RAY_ADDRESS"))
            init_ray(self.cfg.ray)  # only now: a fully reused pipeline never starts Ray
            self.monitor.ray_started()
            self.board = start_board()
            # Fresh process per step: no leaked state.
            self.remote = ray.remote(max_calls=1, runtime_env={"env_vars": step_env(local)})(_execute_step)
        inputs = {d: self.records[d].outputs for d in step.deps}
        ref = self.remote.options(
            num_cpus=step.num_cpus, num_gpus=step.num_gpus, resources=self.cfg.ray.step_resources.get(step.name) or None,
            name=f"vidgen:{step.name}",
        ).remote(step.fn, self.cfg_json, inputs, ctx)
        self.pending[ref] = (step.name, child.info.run_id, fp, time.time())
        self.client.set_tag(self.pid, rs.pipeline_step_tag(step.name), f"ran {child.info.run_id}")
        note = f" (continues interrupted run {interrupted})" if interrupted else ""
        self.echo(f"[vidgen] {step.name:<10} started run {child.info.run_id}{note}")

    def _collect_one(self) -> None:
        import ray
        from ray.exceptions import RayTaskError

        ready: list[Any] = []
        while not ready:  # wake up a few times a second to show the running steps' progress
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=0.5)
            self._tick()
        name, run_id, fp, start = self.pending.pop(ready[0])
        try:
            outputs = ray.get(ready[0])
        except RayTaskError as exc:
            self.client.set_terminated(run_id, status="FAILED")
            cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
            if isinstance(cause, UserError):
                raise UserError(f"step {name}: {cause}") from None
            # str(RayTaskError) carries the remote traceback; the cause alone would lose it.
            raise StepFailed(f"step {name} failed: {type(cause).__name__}: {cause}", name, str(exc)) from cause
        except Exception as exc:  # the task's worker died (OOM, lost node): no exception of the step's own
            self.client.set_terminated(run_id, status="FAILED")
            raise StepFailed(f"step {name} failed: {type(exc).__name__}: {exc}", name, str(exc)) from exc
        duration = time.time() - start
        self.client.set_tag(run_id, rs.OUTPUTS_TAG, json.dumps(outputs))
        self.client.log_dict(run_id, outputs, "outputs.json")
        self.client.set_terminated(run_id, status="FINISHED")
        self.records[name] = StepRecord(name, fp, run_id, False, duration, outputs)
        self.echo(f"[vidgen] {name:<10} finished in {duration:.1f}s")

    def _tick(self) -> None:
        """Hand the running steps and their progress to the monitor (never fails the run)."""
        import ray

        if type(self.monitor).tick is Monitor.tick:  # nobody watches: do not poll the board
            return
        running = {run_id: (name, start) for name, run_id, _, start in self.pending.values()}
        try:
            board = ray.get(self.board.snapshot.remote(), timeout=2) if self.board is not None else {}
            self.monitor.tick(running, board)
        except Exception as exc:  # noqa: BLE001 - progress display is best-effort
            log.debug("progress display failed: %s", exc)

    def cancel(self) -> None:
        """Stop steps still running and mark their runs KILLED."""
        if not self.pending:
            return
        import ray

        for ref, (_, run_id, _, _) in list(self.pending.items()):
            ray.cancel(ref, force=True)
            self.client.set_terminated(run_id, status="KILLED")
        self.pending.clear()
