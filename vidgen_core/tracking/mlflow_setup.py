"""Where MLflow data lives: tracking URI, artifact location, experiment.

Embedded default: one SQLite database and one artifact folder under the
workdir, both given as *absolute* URIs. A relative ``sqlite:///mlflow.db``
resolves against each process's current directory, so Ray workers (which run
in their own working directories) would each open a different database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from vidgen_core.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from vidgen_core.config import TrackingConfig

DB_NAME = "mlflow.db"
# The MLflow UI picks an experiment's layout from this tag (read from the UI's own code,
# MLflow 3.x): without it, an experiment may open in the GenAI view (traces, "evaluation
# runs") instead of the model-training one.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# MLflow 3.17's UI also keeps a browser-wide "GenAI | Model training" switch (URL parameter
# ``workflowType``, default GenAI) that the tag does not move: a run page opened without it shows
# the GenAI layout (breadcrumb "Evaluations"). Links vidgen prints carry it (seen in headless Chromium).
UI_WORKFLOW_QUERY = "workflowType=machine_learning"
ARTIFACTS_DIR = "mlartifacts"
_SQLITE = "sqlite:///"


def run_page_url(ui_base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run, in the model-training layout (``ui_base``: ``http://host:port``)."""
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{UI_WORKFLOW_QUERY}"


def default_tracking_uri(workdir: str | os.PathLike[str]) -> str:
    """``sqlite:////abs/workdir/mlflow.db`` (four slashes: an absolute path)."""
    return _SQLITE + str(Path(workdir).expanduser().absolute() / DB_NAME)


def _absolute_sqlite(uri: str) -> str:
    # sqlite:///rel.db is relative to the cwd *now*; pin it before workers move.
    path = uri[len(_SQLITE) :]
    if not path or path.startswith("/") or path.startswith(":memory:") or "?" in path:
        return uri
    return _SQLITE + str(Path(path).expanduser().absolute())


def resolve_tracking_uri(cfg_uri: str | None, workdir: str | os.PathLike[str]) -> str:
    """The tracking URI every process of a pipeline must use.

    Order: ``cfg_uri`` (tracking.uri), else ``$MLFLOW_TRACKING_URI``, else
    :func:`default_tracking_uri` under ``workdir``. A relative SQLite URI from
    either source is made absolute against the current directory. Pure: the
    caller creates ``workdir`` (see :func:`init_tracking`).
    """
    uri = cfg_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(workdir)
    if uri.startswith(_SQLITE):
        uri = _absolute_sqlite(uri)
    return uri


def default_artifact_location(tracking_uri: str, workdir: str | os.PathLike[str]) -> str | None:
    """Artifact root for new experiments, or None to let the tracking server decide.

    For the embedded SQLite default it is the file URI of ``<workdir>/mlartifacts``
    (MLflow's own default for a SQLite store would be ``./mlruns`` relative to
    whatever the cwd is). A server (http/https) owns its artifact store.
    """
    if tracking_uri.startswith(_SQLITE):
        return (Path(workdir).expanduser().absolute() / ARTIFACTS_DIR).as_uri()
    return None


def get_or_create_experiment(
    client: MlflowClient, name: str, artifact_location: str | None = None
) -> str:
    """Id of the active experiment called ``name``, creating it if needed.

    The experiment is tagged as a model-training experiment (``EXPERIMENT_KIND_TAG``)
    unless it already carries a kind. Safe against a concurrent creator (the loser re-reads the winner's id).

    Raises:
        UserError: an experiment of that name exists but was deleted (one line).
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(
                name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        raise UserError(
            f"MLflow experiment '{name}' (id {exp.experiment_id}) is deleted; restore it with "
            f"`mlflow experiments restore --experiment-id {exp.experiment_id}` or set tracking.experiment"
        )
    if exp.tags.get(EXPERIMENT_KIND_TAG) is None:  # made by an older vidgen or by hand: mark it once
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def init_tracking(cfg: TrackingConfig, workdir: str | os.PathLike[str]) -> tuple[str, str]:
    """Resolve the URI, create the workdir and the experiment: ``(tracking_uri, experiment_id)``."""
    from mlflow import MlflowClient

    Path(workdir).expanduser().mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(cfg.uri, workdir)
    if uri.startswith(_SQLITE):
        # SQLite creates the file, not its folder (a user-given path may be elsewhere).
        db_path = uri[len(_SQLITE) :]
        if db_path.startswith("/"):
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    experiment_id = get_or_create_experiment(
        MlflowClient(uri), cfg.experiment, default_artifact_location(uri, workdir)
    )
    return uri, experiment_id


@contextmanager
def use_tracking_uri(uri: str | None) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI at ``uri`` for a block, then restore it.

    Needed only around MLflow calls that read the global URI (``Model.log``,
    ``pyfunc.load_model`` of ``models:/`` URIs); everything else takes an
    explicit ``MlflowClient(uri)``. ``None`` leaves the current URI alone.
    """
    if uri is None:
        yield
        return
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # Restore exactly what was there: MLflow keeps None for "not set" (its
    # default then applies, resolved lazily); get_tracking_uri() would pin it.
    previous = getattr(tracking_utils, "_tracking_uri", None)
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it
        # set_tracking_uri also exports or clears MLFLOW_TRACKING_URI; put the caller's back.
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when an http(s) tracking server does not answer ``/health``.

    Without this, MLflow's client retries a dead server for minutes before the
    first error. Non-HTTP URIs (SQLite, file) need no server and pass.

    Raises:
        UserError: the server is unreachable or not an MLflow server.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http(s) only, checked above)
            if resp.status == 200:
                return
            reason = f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise UserError(
        f"cannot reach the MLflow tracking server at '{uri}' ({reason}); start it "
        "(`mlflow server ...`) or unset MLFLOW_TRACKING_URI / tracking.uri to use the local SQLite store"
    )


def sqlite_path(uri: str) -> str | None:
    """The database file of an absolute ``sqlite:////abs/path.db`` URI, else None."""
    if not uri.startswith(_SQLITE):
        return None
    path = uri[len(_SQLITE) :].split("?", 1)[0]
    return path if path.startswith("/") else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialize a critical section across processes sharing one SQLite store.

    Two pipelines starting at once on a fresh database would both run MLflow's
    schema migrations (and fail); two register steps would both read, then both
    move, the ``champion`` alias. An ``flock`` on a file beside the database
    orders them. Other stores (a tracking server) pass through unlocked: the
    server serializes its own writes.
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path + ".vidgen.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def open_store(uri: str, experiment: str, workdir: str | os.PathLike[str]) -> tuple[MlflowClient, str]:
    """Client + experiment id, with the store created (migrations run) under :func:`store_lock`.

    Raises:
        UserError: an http(s) server is unreachable, or the experiment is deleted.
    """
    from mlflow import MlflowClient

    check_reachable(uri)
    with store_lock(uri):
        client = MlflowClient(uri)  # opens the store: on a fresh SQLite file, runs the migrations
        experiment_id = get_or_create_experiment(client, experiment, default_artifact_location(uri, workdir))
        client.search_registered_models(max_results=1)  # opens (creates) the registry store too
    return client, experiment_id
