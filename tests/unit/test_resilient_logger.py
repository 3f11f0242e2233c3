"""ResilientMetricLogger against a tracking server that is not there: sends fail fast, close() is bounded.

With MLflow's default HTTP retries one send to an absent server takes minutes
(7 retries backing off 4 s, 8 s, ...: about 4 minutes); the logger's sends must make one attempt
and leave the retrying to its own loop. No MLflow server is started here: a
closed port (refused) and a socket that accepts but never answers (timeout)
stand in for one that is down and one that hangs.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.timeout(60)

RUN_ID = "0" * 32


@pytest.fixture(autouse=True)
def mlflow_default_retries(monkeypatch):
    """MLflow's own (slow) retry settings, so that only the logger can make a send fail fast."""
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def _closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there now
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server():
    """A port that accepts TCP connections (the kernel's backlog) but never answers a request."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


def _wait_for_failure(logger, within_s: float) -> float:
    t0 = time.monotonic()
    while logger.failures == 0 and time.monotonic() - t0 < within_s:
        time.sleep(0.01)
    return time.monotonic() - t0


def test_a_send_to_a_closed_port_fails_at_once_and_close_keeps_count():
    from mlflow import MlflowClient

    from vidgen_core.tracking.resilient_logger import ResilientMetricLogger

    env_before = dict(os.environ)
    logger = ResilientMetricLogger(MlflowClient(f"http://127.0.0.1:{_closed_port()}"), RUN_ID, max_pending=4)
    logger.log({"a": 1.0, "b": 2.0, "c": 3.0}, step=0)
    with pytest.warns(UserWarning, match="dropping the oldest"):
        logger.log({"a": 1.5, "b": 2.5, "c": 3.5}, step=1)  # 6 points, 4 kept: the 2 oldest dropped
    failed_after = _wait_for_failure(logger, within_s=10)
    assert logger.failures >= 1 and failed_after < 3, (failed_after, logger.last_error)
    assert "runs/log-batch" in logger.last_error  # the REST call itself, refused

    t0 = time.monotonic()
    with pytest.warns(UserWarning, match="could not be sent"):
        undelivered = logger.close(timeout_s=1.0)
    closed_in = time.monotonic() - t0
    assert 1.0 <= closed_in < 2.0
    assert (undelivered, logger.dropped, logger.sent) == (6, 2, 0)
    assert dict(os.environ) == env_before  # no process-wide MLflow setting was touched
    print(f"refused: first send failed in {failed_after:.3f} s; close(1.0) returned in {closed_in:.2f} s")


def test_a_send_to_a_server_that_never_answers_times_out_after_one_attempt(silent_server):
    from mlflow import MlflowClient

    from vidgen_core.tracking.resilient_logger import ResilientMetricLogger

    logger = ResilientMetricLogger(MlflowClient(silent_server), RUN_ID, send_timeout_s=0.5, max_backoff_s=0.5)
    logger.log({"loss": 1.0}, step=0)
    failed_after = _wait_for_failure(logger, within_s=10)
    assert logger.failures >= 1 and 0.4 < failed_after < 3, (failed_after, logger.last_error)

    t0 = time.monotonic()
    with pytest.warns(UserWarning, match="could not be sent"):
        undelivered = logger.close(timeout_s=1.5)
    closed_in = time.monotonic() - t0
    assert closed_in < 2.5
    assert (undelivered, logger.dropped, logger.sent) == (1, 0, 0)
    print(f"silent: first send timed out in {failed_after:.3f} s; close(1.5) returned in {closed_in:.2f} s")


def test_a_send_reaches_the_log_batch_endpoint_with_every_point():
    """The REST call the logger makes is the one MlflowClient.log_batch would make."""
    from mlflow import MlflowClient

    from vidgen_core.tracking.resilient_logger import ResilientMetricLogger

    bodies: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            bodies.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:  # keep the test's output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        logger = ResilientMetricLogger(MlflowClient(f"http://127.0.0.1:{server.server_port}"), RUN_ID)
        logger.log({"loss": 0.5, "lr": 1e-3}, step=7, timestamp_ms=1234)
        assert logger.close(timeout_s=10) == 0 and logger.sent == 2
    finally:
        server.shutdown()
        server.server_close()
    assert [path for path, _ in bodies] == ["/api/2.0/mlflow/runs/log-batch"]
    body = bodies[0][1]
    assert body["run_id"] == RUN_ID
    assert [(m["key"], m["value"], int(m["timestamp"]), int(m["step"])) for m in body["metrics"]] == [
        ("loss", 0.5, 1234, 7), ("lr", 1e-3, 1234, 7)]


class _LocalClient:
    """Stands in for an MlflowClient on a SQLite or file store: no HTTP underneath."""

    def __init__(self) -> None:
        self.batches: list[list] = []

    def log_batch(self, run_id: str, metrics: list) -> None:
        self.batches.append(metrics)


def test_stores_without_http_are_sent_through_the_client():
    from vidgen_core.tracking.resilient_logger import ResilientMetricLogger

    client = _LocalClient()
    logger = ResilientMetricLogger(client, RUN_ID)
    for step in range(3):
        logger.log({"loss": 1.0 / (step + 1)}, step)
    assert logger.close(timeout_s=10) == 0
    assert [m.step for batch in client.batches for m in batch] == [0, 1, 2]
