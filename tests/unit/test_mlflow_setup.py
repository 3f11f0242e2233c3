"""Tracking URI resolution: explicit > $MLFLOW_TRACKING_URI > absolute SQLite under the workdir."""

from __future__ import annotations

import os

import pytest

from vidgen_core.tracking.mlflow_setup import (
    default_artifact_location,
    resolve_tracking_uri,
    use_tracking_uri,
)


def test_default_is_absolute_sqlite_under_workdir(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri(None, "ws")  # a relative workdir still gives an absolute URI
    assert uri == f"sqlite:///{tmp_path}/ws/mlflow.db"
    assert uri.startswith("sqlite:////")


def test_config_beats_env_beats_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri("http://127.0.0.1:6000", tmp_path) == "http://127.0.0.1:6000"
    assert resolve_tracking_uri(None, tmp_path) == "http://127.0.0.1:5000"


def test_relative_sqlite_is_pinned_to_the_current_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri("sqlite:///runs/m.db", "/elsewhere") == f"sqlite:///{tmp_path}/runs/m.db"
    assert resolve_tracking_uri("sqlite:////abs/m.db", "/elsewhere") == "sqlite:////abs/m.db"


def test_artifact_location_only_for_sqlite(tmp_path):
    sqlite = resolve_tracking_uri("sqlite:////x/mlflow.db", tmp_path)
    assert default_artifact_location(sqlite, tmp_path) == (tmp_path / "mlartifacts").as_uri()
    assert default_artifact_location("http://127.0.0.1:5000", tmp_path) is None


@pytest.mark.parametrize("env", [None, "sqlite:////from/env.db"])
def test_use_tracking_uri_restores_global_state(monkeypatch, env):
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    if env is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    before = tracking_utils._tracking_uri
    with use_tracking_uri("sqlite:////tmp/vidgen-x.db"):
        assert mlflow.get_tracking_uri() == "sqlite:////tmp/vidgen-x.db"
    assert tracking_utils._tracking_uri == before
    assert os.environ.get("MLFLOW_TRACKING_URI") == env
    with use_tracking_uri(None):
        assert tracking_utils._tracking_uri == before


def test_no_import_time_side_effects():
    # Importing the tracking package must not import MLflow (it is an edge adapter).
    import subprocess
    import sys

    code = (
        "import sys, vidgen_core.tracking.mlflow_setup, vidgen_core.tracking.registry, "
        "vidgen_core.tracking.artifacts, vidgen_core.eval.evaluate; "
        "print('mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_experiments_open_as_model_training_in_the_ui(tmp_path):
    """New and pre-existing experiments carry mlflow.experimentKind=custom_model_development."""
    from vidgen_core.tracking.mlflow_setup import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, open_store

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client, new_id = open_store(uri, "fresh", tmp_path)
    assert client.get_experiment(new_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    old_id = client.create_experiment("made-earlier")  # e.g. by an older vidgen: tagged on first use
    _, same = open_store(uri, "made-earlier", tmp_path)
    assert same == old_id and client.get_experiment(old_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    client.set_experiment_tag(old_id, EXPERIMENT_KIND_TAG, "finetuning")  # a user's own choice stays
    open_store(uri, "made-earlier", tmp_path)
    assert client.get_experiment(old_id).tags[EXPERIMENT_KIND_TAG] == "finetuning"
