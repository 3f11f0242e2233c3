"""The MLflow UI link in the closing summary: model-training layout, no credentials."""

from __future__ import annotations

from vidgen_core.tracking.mlflow_setup import run_page_url
from workflows.report import _without_credentials


def test_run_page_url_asks_for_the_model_training_layout() -> None:
    url = run_page_url("http://127.0.0.1:5000/", "3", "abc")
    assert url == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"


def test_a_printed_link_carries_no_credentials() -> None:
    assert _without_credentials("https://alice:s3cret@mlflow.example.com:8443/x") == "https://mlflow.example.com:8443/x"
    assert _without_credentials("http://host:5000") == "http://host:5000"
