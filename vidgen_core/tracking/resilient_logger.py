"""Metrics to one MLflow run that survive a tracking-server outage.

Training must never wait on, or die of, the tracking server. :meth:`log`
only appends to a bounded in-memory queue; a daemon thread sends the queue in
``log_batch`` calls and, when the server is unreachable, keeps the metrics and
retries with exponential backoff. When the server is back, everything queued
arrives (in order, with the steps and timestamps of when it was measured).

Against a tracking server each send is one HTTP attempt with a short timeout.
MLflow's own HTTP retries (7 by default, backing off 4 s, 8 s, ...: about 4
minutes in all) would hold a single send long past :meth:`close`'s bounded
wait, while the server may have been back for most of it. Retrying is this
logger's job.

Memory is bounded: past ``max_pending`` queued points the oldest are dropped
and counted (:attr:`dropped`), with one warning. :meth:`flush` waits (bounded)
until the queue is empty; call :meth:`close` at the end of training.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import warnings
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
LOG_BATCH_ENDPOINT = "/api/2.0/mlflow/runs/log-batch"  # MLflow's stable REST API, as RestStore calls it


def batch_sender(client: MlflowClient, timeout_s: float) -> Callable[[str, list[Metric]], None]:
    """A function that sends one ``log_batch`` through ``client``'s store, failing fast over HTTP.

    For a tracking server (a ``RestStore``) it posts to the REST endpoint itself
    with ``max_retries=0`` and ``timeout=timeout_s`` passed to MLflow's
    ``http_request`` per call: ``MlflowClient.log_batch`` has no such arguments
    and would take them from the process-wide ``MLFLOW_HTTP_REQUEST_*``
    variables, which every other MLflow call of the process (registry, artifacts)
    also reads and should keep. Other stores (SQLite, files) do no HTTP and
    no retries, so ``client.log_batch`` serves them as it is.
    """
    from mlflow.store.tracking.rest_store import RestStore

    # MlflowClient has no public accessor for its store; should that attribute go, every
    # store falls back to client.log_batch below (slow to fail again, but still correct).
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if not isinstance(store, RestStore):
        return lambda run_id, batch: client.log_batch(run_id, metrics=batch)

    from mlflow.protos.service_pb2 import LogBatch
    from mlflow.utils.proto_json_utils import message_to_json
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    def send(run_id: str, batch: list[Metric]) -> None:
        body = json.loads(message_to_json(LogBatch(run_id=run_id, metrics=[m.to_proto() for m in batch])))
        # A resend after a timeout whose request did land is harmless: the server skips
        # metric points it already holds (same key, step, timestamp and value).
        response = http_request(
            store.get_host_creds(), LOG_BATCH_ENDPOINT, "POST",
            max_retries=0, backoff_factor=0, backoff_jitter=0, timeout=timeout_s, json=body,
        )
        verify_rest_response(response, LOG_BATCH_ENDPOINT)

    return send


class ResilientMetricLogger:
    """Queue metrics for ``run_id`` and deliver them from a background thread.

    Args:
        client: MLflow client bound to the tracking URI.
        run_id: the run that receives the metrics.
        max_pending: most metric points held while the server is away.
        min_backoff_s, max_backoff_s: retry delays after a failed send (doubling).
        send_timeout_s: most seconds one send to a tracking server may take (one attempt).
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        max_pending: int = 200_000,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 15.0,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.max_pending = max_pending
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._send = batch_sender(client, send_timeout_s)
        self.dropped = 0
        self.sent = 0
        self.failures = 0
        self.last_error: str | None = None
        self._queue: collections.deque[Metric] = collections.deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closed = False
        self._warned_drop = False
        self._thread = threading.Thread(target=self._run, name=f"mlflow-metrics-{run_id[:8]}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Metric points not yet acknowledged by the server."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def log(self, metrics: dict[str, float], step: int, timestamp_ms: int | None = None) -> None:
        """Queue ``metrics`` at ``step``; returns at once and never raises."""
        try:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
            points = [Metric(str(k), float(v), ts, int(step)) for k, v in sorted(metrics.items())]
        except Exception as exc:  # a bad value must not stop training either
            warnings.warn(f"metrics at step {step} not logged: {exc}", stacklevel=2)
            return
        with self._cond:
            if self._closed:
                return
            self._queue.extend(points)
            overflow = len(self._queue) - self.max_pending
            for _ in range(max(0, overflow)):
                self._queue.popleft()
            if overflow > 0:
                self.dropped += overflow
            self._cond.notify_all()
        if overflow > 0 and not self._warned_drop:
            self._warned_drop = True
            warnings.warn(
                f"MLflow unreachable and {self.max_pending} metric points queued: dropping the oldest "
                f"(last error: {self.last_error})",
                stacklevel=2,
            )

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Retry now and wait until every queued point is delivered; False if ``timeout_s`` ran out."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._cond:
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
                self._wake.set()  # cut a backoff short: the caller is waiting
        return True

    def close(self, timeout_s: float = 60.0) -> int:
        """Flush (bounded), stop the thread; returns how many points were not delivered."""
        delivered = self.flush(timeout_s)
        with self._cond:
            self._closed = True
            left = len(self._queue) + self._in_flight
            self._cond.notify_all()
        self._wake.set()
        if not delivered and left:
            warnings.warn(
                f"{left} metric points for run {self.run_id} could not be sent to MLflow "
                f"(last error: {self.last_error})",
                stacklevel=2,
            )
        return left + self.dropped

    # ------------------------------------------------------------------ sender thread

    def _take(self) -> list[Metric]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            n = min(MAX_BATCH, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight = n
            return batch

    def _give_back(self, batch: list[Metric]) -> None:
        with self._cond:
            self._queue.extendleft(reversed(batch))  # keep the order for the retry
            overflow = len(self._queue) - self.max_pending
            for _ in range(max(0, overflow)):
                self._queue.popleft()
            self.dropped += max(0, overflow)
            self._in_flight = 0
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = self.min_backoff_s
        while True:
            batch = self._take()
            if not batch:  # closed and empty
                return
            try:
                self._send(self.run_id, batch)
            except Exception as exc:  # connection refused, timeout, 5xx: one attempt each, retried here
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                self._give_back(batch)
                with self._cond:
                    if self._closed:
                        return
                self._wake.clear()
                self._wake.wait(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)
                continue
            backoff = self.min_backoff_s
            with self._cond:
                self.sent += len(batch)
                self._in_flight = 0
                self._cond.notify_all()
