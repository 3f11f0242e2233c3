"""Live progress of long work (ingest, training), from wherever it runs to the driver's console.

Work runs in Ray tasks and Ray Train workers, processes whose output the
driver only sees as a log stream; a progress bar needs numbers, not lines. So
a small actor, the *board* (one per Ray job, named :data:`BOARD_NAME`), holds
the latest values per key (the MLflow run id of the step doing the work); the
driver reads it a few times a second and draws. Reporters send fire-and-forget
updates, throttled, and never fail the work they report on: without a board
(a library call, a unit test) they do nothing.

Two kinds of values: ``set`` (the latest value wins: step, loss) and ``add``
(counters summed over every reporter: files and frames done by many ingest tasks).
"""

from __future__ import annotations

import time
from typing import Any

BOARD_NAME = "vidgen-progress"
_LOOKUP_RETRY_S = 5.0


class Board:
    """Latest progress values per key; ``t`` is when each key was last updated."""

    def __init__(self) -> None:
        self._state: dict[str, dict[str, Any]] = {}

    def update(self, key: str, values: dict[str, Any], counts: dict[str, float]) -> None:
        entry = self._state.setdefault(key, {})
        entry.update(values)
        for name, n in counts.items():
            entry[name] = entry.get(name, 0) + n
        entry["t"] = time.time()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self._state


def start_board() -> Any:
    """The board of the current Ray job, created if needed (the driver calls this once Ray is up)."""
    import ray

    # num_cpus=0: it must never wait for, or take, a CPU the work itself needs.
    return ray.remote(num_cpus=0)(Board).options(name=BOARD_NAME, get_if_exists=True).remote()


class Reporter:
    """Sends progress for ``key`` to the board, at most every ``interval_s`` (counters are summed meanwhile)."""

    def __init__(self, key: str | None, interval_s: float = 1.0) -> None:
        self.key = key
        self.interval_s = interval_s
        self._board: Any = None
        self._looked_up = -_LOOKUP_RETRY_S
        self._values: dict[str, Any] = {}
        self._counts: dict[str, float] = {}
        self._sent = 0.0

    def set(self, **values: Any) -> None:
        """Latest values (e.g. ``step=10, loss=0.3``), sent when the interval has passed."""
        self._values.update(values)
        self._maybe_send()

    def add(self, **counts: float) -> None:
        """Increments of counters (e.g. ``files=1, frames=240``), sent when the interval has passed."""
        for name, n in counts.items():
            self._counts[name] = self._counts.get(name, 0) + n
        self._maybe_send()

    def flush(self) -> None:
        """Send what is pending now (call at the end of the work)."""
        if self._values or self._counts:
            self._send()

    def _maybe_send(self) -> None:
        if time.monotonic() - self._sent >= self.interval_s:
            self._send()

    def _send(self) -> None:
        self._sent = time.monotonic()
        board = self._find_board()
        if board is None:
            return
        values, counts = self._values, self._counts
        self._values, self._counts = {}, {}
        try:
            board.update.remote(self.key, values, counts)
        except Exception:  # noqa: BLE001 - progress is best-effort; the work goes on
            self._board = None

    def _find_board(self) -> Any:
        if self.key is None:
            return None
        if self._board is None and time.monotonic() - self._looked_up >= _LOOKUP_RETRY_S:
            self._looked_up = time.monotonic()
            try:
                import ray

                if ray.is_initialized():
                    self._board = ray.get_actor(BOARD_NAME)
            except Exception:  # noqa: BLE001 - no board (library use, tests): report nothing
                self._board = None
        return self._board
