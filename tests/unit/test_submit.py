"""`vidgen submit`'s decisions that need no cluster: storage checks, the job's runtime env and arguments."""

from __future__ import annotations

import pytest

from vidgen_core.config import ConfigError, load_config
from vidgen_core.errors import UserError
from workflows import submit as sb


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)


def test_one_node_accepts_the_embedded_defaults() -> None:
    sb.check_cluster_storage(load_config(), "/data/wd", nodes=1)


@pytest.mark.parametrize("uri", [None, "sqlite:////tmp/m.db", "file:///tmp/mlruns", "/tmp/mlruns"])
def test_multi_node_refuses_a_tracking_store_one_node_sees(uri: str | None) -> None:
    overrides = [f"tracking.uri={uri}"] if uri else []
    with pytest.raises(UserError, match="3 nodes and the MLflow tracking store .* set MLFLOW_TRACKING_URI"):
        sb.check_cluster_storage(load_config(None, overrides + ["storage.shared=true"]), "/mnt/wd", nodes=3)


def test_multi_node_refuses_a_local_work_dir_not_declared_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    with pytest.raises(UserError, match="work dir '/data/wd' is a node-local path.*storage.shared=true"):
        sb.check_cluster_storage(load_config(), "/data/wd", nodes=2)
    sb.check_cluster_storage(load_config(None, ["storage.shared=true"]), "/data/wd", nodes=2)
    sb.check_cluster_storage(load_config(), "s3://bucket/wd", nodes=2)  # an object store is seen by every node


def test_runtime_env_ships_the_project_and_passes_mlflow_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws")
    env = sb.runtime_env(load_config(), "/mnt/wd")
    assert env["working_dir"] == str(sb.PROJECT_ROOT) and (sb.PROJECT_ROOT / "pyproject.toml").exists()
    assert ".venv" in env["excludes"] and "pip" not in env  # Ray's pip step cannot install the working dir
    assert env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["env_vars"]["MLFLOW_TRACKING_PASSWORD"] == "pw"
    assert "AWS_SECRET_ACCESS_KEY" not in env["env_vars"]  # no s3:// anywhere: AWS keys stay home
    assert sb.runtime_env(load_config(), "s3://b/wd")["env_vars"]["AWS_SECRET_ACCESS_KEY"] == "aws"
    assert not any("RAY_AUTH" in k for k in env["env_vars"])  # the nodes have their own token


def test_job_args_make_the_recipe_relative_to_the_uploaded_project(tmp_path) -> None:
    recipe = str(sb.PROJECT_ROOT / "workflows" / "configs" / "tiny.yaml")
    assert sb.job_args(["--config", recipe, "--set", "a.b=1"], recipe) == [
        "--config", "workflows/configs/tiny.yaml", "--set", "a.b=1"]
    outside = tmp_path / "r.yaml"
    outside.write_text("{}")
    with pytest.raises(UserError, match="outside the project directory"):
        sb.job_args(["--config", str(outside)], str(outside))


def test_step_resources_name_real_steps(tmp_path) -> None:
    from workflows.executor import run_pipeline

    cfg = load_config(None, ["ray.step_resources={trainvae: {gpu_pool: 1}}"])
    with pytest.raises(UserError, match="unknown step 'trainvae' for ray.step_resources"):
        run_pipeline(cfg, tmp_path, echo=lambda _: None)
    with pytest.raises(ConfigError, match="storage.shared"):
        load_config(None, ["storage.shared=maybe"])


def test_submit_refuses_a_relative_work_dir_before_contacting_anything(tmp_path) -> None:
    from click.testing import CliRunner

    from workflows.cli import main

    result = CliRunner().invoke(main, ["submit", "--address", "http://127.0.0.1:9", "--", "--workdir", "rel"])
    assert result.exit_code == 2
    assert "vidgen submit needs an absolute --workdir" in result.output


def test_uri_passwords_never_reach_params() -> None:
    from vidgen_core.storage import redact
    from workflows.executor import _flat_params

    assert redact("http://bob:s3cret@mlflow:5000/x") == "http://bob:***@mlflow:5000/x"
    assert redact("http://mlflow:5000") == "http://mlflow:5000"
    params = _flat_params(load_config(None, ["tracking.uri=https://bob:s3cret@mlflow.example"]))
    assert params["tracking.uri"] == "https://bob:***@mlflow.example"
    assert not any("s3cret" in v for v in params.values())
