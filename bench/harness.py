"""What every vidgen benchmark shares so that its figures cannot mislead.

A ratio taken on a busy machine says more about the other jobs than about
vidgen (an oversubscribed CPU hands Ray's extra processes a bigger share; see
bench/RESULTS.md). So each bench:

- samples the 1-minute load average while it runs (:class:`LoadWatch`) and
  prints it, with the core count, beside every figure;
- marks its summary ``"busy": true`` and says so in words when the load
  beyond its own exceeded ``BUSY_LOAD_PER_CORE`` per core at any sample (a bench
  declares ``own_load``, the CPUs its contenders keep busy: a one-thread
  training bench alone puts the load at ~1, which is not somebody else's job);
- alternates contenders (A, B, A, B, ...) so drift hits both alike, and reports
  the median of at least three repeats (:func:`alternate`, :func:`median`).

Standard library only: the GPU bench imports it on a bare box.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

BUSY_LOAD_PER_CORE = 0.5  # above this, other work shares the CPU noticeably
MIN_REPEATS = 3


def cores() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LoadWatch:
    """Samples ``os.getloadavg()[0]`` every ``interval_s`` in a daemon thread.

    Use as a context manager around the measured work. The 1-minute average
    lags: it includes up to a minute before the start, which is what we want —
    a bench started right after a heavy job is not quiet either.
    """

    def __init__(
        self,
        interval_s: float = 1.0,
        threshold_per_core: float = BUSY_LOAD_PER_CORE,
        load_fn: Callable[[], float] = lambda: os.getloadavg()[0],
        own_load: float = 0.0,
    ) -> None:
        self.interval_s = interval_s
        self.load_fn = load_fn
        self.own_load = own_load  # runnable threads the bench itself keeps busy
        self.threshold = threshold_per_core * cores()
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> float:
        load = self.load_fn()
        self.samples.append(load)
        return load

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> LoadWatch:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="load-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    @property
    def max_load(self) -> float:
        return max(self.samples) if self.samples else self.load_fn()

    @property
    def other_load(self) -> float:
        """The worst load seen beyond the bench's own."""
        return max(0.0, self.max_load - self.own_load)

    @property
    def busy(self) -> bool:
        return self.other_load > self.threshold

    def fields(self) -> dict[str, Any]:
        """What goes beside every figure: load now, the worst seen, the bench's own, cores, and the verdict."""
        return {"load_avg_1m": round(self.load_fn(), 2), "load_avg_1m_max": round(self.max_load, 2),
                "own_load": self.own_load, "cores": cores(), "busy": self.busy}

    def verdict(self) -> str:
        """One line in words for the summary."""
        if self.busy:
            return (f"BUSY: 1-min load reached {self.max_load:.1f} on {cores()} cores, {self.other_load:.1f} beyond "
                    f"the bench's own {self.own_load:g} (> {BUSY_LOAD_PER_CORE} per core); these figures are not "
                    "quiet-machine figures, do not quote them as headline numbers")
        return (f"quiet: 1-min load at most {self.max_load:.1f} on {cores()} cores, of which the bench's own "
                f"{self.own_load:g}")


def alternate(contenders: dict[str, Callable[[], dict[str, Any]]], repeats: int = MIN_REPEATS) -> dict[str, list]:
    """Run each contender ``repeats`` times, interleaved (A, B, A, B, ...): name -> list of results."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    results: dict[str, list] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            results[name].append(run())
    return results


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def busy_loop(seconds: float) -> None:
    """Burn one CPU for ``seconds`` (used to load the machine in the harness test)."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1
