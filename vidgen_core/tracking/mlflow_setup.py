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
ARTIFACTS_DIR = "mlartifacts"
_SQLITE = "sqlite:///"


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

    Safe against a concurrent creator (the loser re-reads the winner's id).

    Raises:
        UserError: an experiment of that name exists but was deleted (one line).
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
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
