"""Against a real `mlflow server` (SQLite backend, proxied artifacts) on 127.0.0.1: metrics
logged while the server is down arrive once it is back.

A whole pipeline logging, registering and loading through a server alone is
checked by tests/integration/test_cluster.py, whose workflow runs against one.
"""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.mark.reliability
def test_metrics_logged_during_an_outage_arrive_when_the_server_is_back(mlflow_server, drill):
    from mlflow import MlflowClient

    case = drill("tracking server down mid-training", "fault",
                 "`mlflow server` stopped while a run logs metrics, then started again on the same store",
                 "logging neither blocks nor raises; every metric logged during the outage arrives")

    from vidgen_core.tracking.resilient_logger import ResilientMetricLogger

    # No MLFLOW_HTTP_REQUEST_* settings: the logger's sends fail fast by themselves, as in training.
    server = mlflow_server()
    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment("outage")).info.run_id
    logger = ResilientMetricLogger(client, run_id, min_backoff_s=0.2, max_backoff_s=1.0)
    for step in range(5):
        logger.log({"loss": 1.0 / (step + 1)}, step)
    assert logger.flush(timeout_s=30)

    server.stop()
    down_at = t0 = time.monotonic()
    for step in range(5, 10):  # "training" goes on: logging neither blocks nor raises
        logger.log({"loss": 1.0 / (step + 1)}, step)
    assert time.monotonic() - t0 < 0.5
    assert not logger.flush(timeout_s=2) and logger.pending == 5 and logger.failures >= 1

    server.start()  # same port, same backend store
    down_s = time.monotonic() - down_at
    assert logger.flush(timeout_s=60), logger.last_error
    assert logger.close() == 0
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(10))
    case.figure = f"metrics arrived {len(history)}/10 (5 logged during an outage of {down_s:.0f} s)"
