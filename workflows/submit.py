"""`vidgen submit` / `vidgen jobs`: run the workflow as a job on an existing Ray cluster.

What a job needs on a node it has never seen:

- **the code**: this project's directory is uploaded as the job's ``working_dir``
  (Ray puts it on every worker's ``PYTHONPATH``) and the entrypoint is
  ``python -m workflows.cli run …`` inside it, so the nodes run the submitter's
  vidgen. Its dependencies (torch, Ray, MLflow, PyAV) come from the node's image
  or ``setup_commands`` (``cluster/``). No ``pip: ["-e ."]``: Ray's pip step runs
  outside the uploaded directory and fails there.
- **where results go**: ``MLFLOW_TRACKING_URI`` (and MLflow's credential
  variables, and ``AWS_*`` for s3:// data) are passed through as the job's
  environment; they never reach a logged param or tag.

Before anything is uploaded, :func:`check_cluster_storage` refuses, in one line
each, what cannot work on a multi-node cluster: a SQLite/file tracking store
(each node would write its own) and a plain local work directory not declared
shared (``storage.shared: true`` for an NFS/EFS/PVC mount every node sees).

Token auth (``RAY_AUTH_MODE=token``): Ray's client sends the token from
``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``; when one of
the two variables is set, this module turns token mode on for the client itself.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

from vidgen_core.config import PipelineConfig
from vidgen_core.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = "python -m workflows.cli run"
# Never uploaded: environments, outputs, caches (Ray also honours the project's .gitignore).
EXCLUDES = [".venv", "vidgen-work", ".git", "**/__pycache__", "*.egg-info", ".pytest_cache", "dist", "build"]
# Passed from the submitter's environment to the job when set.
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
              "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_S3_ENDPOINT_URL")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
DEFAULT_ADDRESS = "http://127.0.0.1:8265"


def use_token_if_given() -> None:
    """Token mode for this client when a token is given by variable (Ray sends it only in token mode)."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def resolve_address(address: str | None) -> str:
    """``--address``, else ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS`` (as `ray job submit`), else the local dashboard."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if "://" not in address:
        address = f"http://{address}"
    return address.rstrip("/")


def _client_error(address: str, exc: BaseException) -> UserError:
    """One line for what a user can fix: an unreachable cluster, a missing or wrong token."""
    from ray.exceptions import AuthenticationError

    if isinstance(exc, AuthenticationError):
        first = str(exc).splitlines()[0]
        return UserError(
            f"the Ray cluster at {address} refused the request ({first}); token auth is on: set RAY_AUTH_TOKEN_PATH "
            "to a file holding the cluster's token (`ray get-auth-token` on the head prints it) or RAY_AUTH_TOKEN"
        )
    return UserError(f"cannot reach the Ray job API at {address}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                     "pass --address http://HEAD:8265 (the dashboard port) or set RAY_ADDRESS")


def job_client(address: str | None) -> Any:
    """A ``JobSubmissionClient`` for the cluster, or a one-line UserError."""
    use_token_if_given()
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    try:
        return JobSubmissionClient(url)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, AuthenticationError, RuntimeError(version)
        raise _client_error(url, exc) from None


def alive_nodes(address: str | None) -> int:
    """How many nodes of the cluster are alive (through the dashboard's State API)."""
    use_token_if_given()
    from ray.util.state import list_nodes

    url = resolve_address(address)
    try:
        nodes = list_nodes(address=url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
    except Exception as exc:  # noqa: BLE001
        raise _client_error(url, exc) from None
    return len(nodes)


def tracking_uri_for_job(cfg: PipelineConfig) -> str | None:
    """The tracking URI the job will use: ``tracking.uri``, else the submitter's ``MLFLOW_TRACKING_URI``."""
    return cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")


def check_cluster_storage(cfg: PipelineConfig, workdir: str | None, nodes: int) -> None:
    """Refuse, in one line, storage that some node of a multi-node cluster would not see."""
    if nodes <= 1:
        return
    uri = tracking_uri_for_job(cfg)
    if uri is None or uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        what = f"'{uri}'" if uri else "the default SQLite file under the work dir"
        raise UserError(
            f"the cluster has {nodes} nodes and the MLflow tracking store is {what}, which only one node sees; "
            "set MLFLOW_TRACKING_URI (or tracking.uri) to an MLflow server every node reaches, e.g. http://mlflow:5000"
        )
    wd = workdir or "vidgen-work"
    if "://" not in wd and not cfg.storage.shared:
        raise UserError(
            f"the cluster has {nodes} nodes and work dir '{wd}' is a node-local path; put it on a filesystem every node "
            "mounts at the same path and pass --set storage.shared=true (shards, checkpoints and step outputs live there)"
        )


def runtime_env(cfg: PipelineConfig, workdir: str | None) -> dict[str, Any]:
    """The job's runtime env: the project as working dir, MLflow and object-store variables passed through."""
    from vidgen_core.storage import object_store_env

    env = {k: os.environ[k] for k in MLFLOW_ENV if os.environ.get(k)}
    uris = [u for u in (workdir, cfg.data.source) if u]
    env.update(object_store_env(*uris))
    if env.get("MLFLOW_S3_ENDPOINT_URL"):  # MLflow's client uploads artifacts to S3 itself
        env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    env.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")  # job logs are a file, not a terminal
    return {"working_dir": str(PROJECT_ROOT), "excludes": EXCLUDES, "env_vars": env}


def job_args(run_args: list[str], config: str | None) -> list[str]:
    """``vidgen run`` arguments as the node sees them: a --config path relative to the uploaded project.

    Raises:
        UserError: the recipe lies outside the project directory (it would not be uploaded).
    """
    if config is None:
        return list(run_args)
    path = Path(config).expanduser().resolve()
    try:
        rel = path.relative_to(PROJECT_ROOT)
    except ValueError:
        raise UserError(
            f"--config '{config}' lies outside the project directory {PROJECT_ROOT}, which is what the job uploads; "
            "copy the recipe under it (e.g. workflows/configs/) or pass its values with --set"
        ) from None
    out, i = [], 0
    while i < len(run_args):
        arg = run_args[i]
        if arg in ("--config", "-c") and i + 1 < len(run_args):
            out += [arg, str(rel)]
            i += 2
            continue
        if arg.startswith("--config="):
            arg = f"--config={rel}"
        out.append(arg)
        i += 1
    return out


def submit_job(address: str | None, cfg: PipelineConfig, run_args: list[str], config: str | None,
               workdir: str | None) -> tuple[Any, str]:
    """Check storage against the cluster, submit the job; returns ``(client, job id)``."""
    client = job_client(address)
    check_cluster_storage(cfg, workdir, alive_nodes(address))
    entrypoint = f"{ENTRYPOINT} {shlex.join(job_args(run_args, config))}".strip()
    try:
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(cfg, workdir),
                                   metadata={"vidgen": "run"})
    except Exception as exc:  # noqa: BLE001
        raise _client_error(resolve_address(address), exc) from None
    return client, job_id


def follow(client: Any, job_id: str, out: Callable[[str], None] = lambda s: (sys.stdout.write(s), sys.stdout.flush())) -> str:
    """Stream the job's logs until it ends; returns its final status (SUCCEEDED, FAILED, STOPPED)."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out(chunk)

    try:
        asyncio.run(tail())
    except Exception:  # noqa: BLE001 - the log socket dropped (e.g. the dashboard restarted): poll the status
        pass
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        time.sleep(1.0)


def job_lines(address: str | None) -> list[str]:
    """One line per job of the cluster, newest first: id, status, start time, entrypoint."""
    client = job_client(address)
    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0, reverse=True)
    lines = []
    for job in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time / 1000)) if job.start_time else "-"
        job_id = job.submission_id or job.job_id or "-"
        lines.append(f"{job_id:<32} {str(job.status.value):<10} {started}  {job.entrypoint}")
    return lines or ["no jobs on this cluster"]
