"""What every vidgen benchmark shares so that its figures cannot mislead.

A ratio taken on a busy machine says more about the other jobs than about
vidgen (an oversubscribed CPU hands Ray's extra processes a bigger share; see
bench/RESULTS.md). So each bench:

- samples the 1-minute load average while it runs (:class:`LoadWatch`) and
  prints it, with the core count, beside every figure;
- on Linux, also measures the CPU that processes *outside* the bench's own
  process tree used (``/proc``: the machine's busy ticks, hypervisor steal
  included, minus the tree's): the sharper signal, because a load average also
  counts the bench's own threads (FFmpeg's decoder threads lift a 2-process
  PyAV run to a load of 3+ on an idle machine) and lags by a minute;
- marks its summary ``"busy": true`` and says so in words when others used more
  than ``BUSY_OTHER_CPU_PER_CORE`` of the CPUs in any ``window_s`` window (where
  ``/proc`` is missing: when the load beyond the bench's declared ``own_load``
  exceeded ``BUSY_LOAD_PER_CORE`` per core at any sample);
- alternates contenders (A, B, A, B, ...) so drift hits both alike, and reports
  the median of at least three repeats (:func:`alternate`, :func:`median`);
- gives that median an interval and says whether the goal is met, not met, or
  not decided by the runs it has (:func:`median_interval`, :func:`goal_verdict`):
  on a VM whose speed moves by 15-25 % between identical runs, a median of 3-5
  ratios can land on either side of a goal a few per cent away.

Standard library only: the GPU bench imports it on a bare box.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

BUSY_LOAD_PER_CORE = 0.5  # above this, other work shares the CPU noticeably
BUSY_OTHER_CPU_PER_CORE = 0.1  # others using more than a tenth of the CPUs take a share a ratio feels
MIN_REPEATS = 3
DEFAULT_REPEATS = 5  # the fewest whose (min, max) covers the median with >= INTERVAL_COVERAGE
INTERVAL_COVERAGE = 0.9  # what median_interval aims for; 5 runs reach 0.94, 3 only 0.75


def cores() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _machine_busy_ticks() -> int | None:
    """Busy clock ticks of all CPUs since boot (``/proc/stat``: everything but idle and iowait), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already inside user/nice; steal (field 7) is CPU the hypervisor gave to others: keep it.
    return sum(fields[:8]) - idle


def tree_ticks(root: int) -> dict[int, tuple[int, int, int]] | None:
    """``root`` and each process under it: pid -> (parent pid, its own clock ticks (user + system, all
    threads), the ticks of the children it has reaped); None without ``/proc``.

    Ray's GCS, raylet and workers are descendants of the driver, so a Ray bench's own
    daemons count as its own, not as somebody else's load.
    """
    try:
        names = [n for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return None
    stats = {}
    for name in names:
        try:
            with open(f"/proc/{name}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        stats[int(name)] = (int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]))
    if root not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        out[pid] = stats[pid]
        todo.extend(children.get(pid, []))
    return out


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
        own_root: int | None = None,
        window_s: float = 5.0,
        measure_cpu: bool = True,
    ) -> None:
        self.interval_s = interval_s
        self.load_fn = load_fn
        self.own_load = own_load  # runnable threads the bench itself keeps busy
        self.threshold = threshold_per_core * cores()
        self.samples: list[float] = []
        # Others' CPU (Linux): (time, cumulative ticks used outside the tree of own_root) per sample.
        self.own_root = os.getpid() if own_root is None else own_root
        self.window_s = window_s
        self.measure_cpu = measure_cpu and _machine_busy_ticks() is not None and tree_ticks(self.own_root) is not None
        self._hz = os.sysconf("SC_CLK_TCK") if self.measure_cpu else 100
        self._cpu: list[tuple[float, int]] = []
        self._start: tuple[float, int] | None = None  # (time, machine busy ticks) at the first sample
        self._own_seen: dict[int, tuple[int, int, int]] = {}  # each tree process as last seen (tree_ticks)
        self._counted_reaped: dict[int, int] = {}  # per parent: ticks of its vanished children already counted
        self._own_used = 0  # ticks the tree used since the first sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> float:
        load = self.load_fn()
        self.samples.append(load)
        if self.measure_cpu:
            self._sample_cpu()
        return load

    def _sample_cpu(self) -> None:
        now, machine, own = time.monotonic(), _machine_busy_ticks(), tree_ticks(self.own_root)
        if machine is None or own is None:
            return
        if self._start is None:
            self._start, self._own_seen = (now, machine), dict(own)
        self._own_used += self._own_ticks_since_last(own)
        self._cpu.append((now, max(0, (machine - self._start[1]) - self._own_used)))

    def _own_ticks_since_last(self, own: dict[int, tuple[int, int, int]]) -> int:
        """Ticks the tree used since the last sample. Each process counts what it used since it was last
        seen; a process that has exited counts through its parent's reaped-children ticks, less what was
        already counted while it ran (so its last moments count, and nothing twice). A process that exits
        unreaped by the tree (Ray's workers at shutdown) loses only its last interval; one that starts
        counts from 0."""
        for pid in [p for p in self._own_seen if p not in own]:
            ppid, ticks, reaped = self._own_seen.pop(pid)
            self._counted_reaped[ppid] = self._counted_reaped.get(ppid, 0) + ticks + reaped
        used = 0
        for pid, (ppid, ticks, reaped) in own.items():
            _, seen_ticks, seen_reaped = self._own_seen.get(pid, (ppid, 0, 0))
            new_reaped = max(0, reaped - seen_reaped)
            counted = self._counted_reaped.get(pid, 0)
            used += max(0, ticks - seen_ticks) + max(0, new_reaped - counted)
            self._counted_reaped[pid] = max(0, counted - new_reaped)
            self._own_seen[pid] = (ppid, ticks, reaped)
        return used

    @property
    def others_cpu(self) -> float | None:
        """The most CPUs (in cores) that processes outside the bench's tree used over any ``window_s``; None
        without ``/proc`` or before two samples ``window_s`` apart (then over the whole span so far)."""
        if len(self._cpu) < 2:
            return None
        worst = 0.0
        j = 0
        for i in range(1, len(self._cpu)):
            t, used = self._cpu[i]
            while j < i - 1 and t - self._cpu[j + 1][0] >= self.window_s:
                j += 1
            t_j, used_j = self._cpu[j]
            if t - t_j > 0:
                worst = max(worst, (used - used_j) / self._hz / (t - t_j))
        return worst

    @property
    def others_cpu_seconds(self) -> float | None:
        """CPU-seconds that processes outside the bench's tree used over the whole watch (their total, where
        :attr:`others_cpu` is their worst window); None without ``/proc`` or before two samples."""
        if len(self._cpu) < 2:
            return None
        return (self._cpu[-1][1] - self._cpu[0][1]) / self._hz

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
        others = self.others_cpu
        if others is not None:
            return others > BUSY_OTHER_CPU_PER_CORE * cores()
        return self.other_load > self.threshold

    def fields(self) -> dict[str, Any]:
        """What goes beside every figure: load now, the worst seen, the bench's own, others' CPU, cores, verdict."""
        others = self.others_cpu
        return {"load_avg_1m": round(self.load_fn(), 2), "load_avg_1m_max": round(self.max_load, 2),
                "own_load": self.own_load, "others_cpu_max": None if others is None else round(others, 2),
                "cores": cores(), "busy": self.busy}

    def verdict(self) -> str:
        """One line in words for the summary."""
        others = self.others_cpu
        if others is not None:
            limit = BUSY_OTHER_CPU_PER_CORE * cores()
            if others > limit:
                return (f"BUSY: processes outside the bench used up to {others:.2f} of {cores()} CPUs over "
                        f"{self.window_s:g} s (> {limit:.2f}); these figures are not quiet-machine figures, do not "
                        "quote them as headline numbers")
            return (f"quiet: processes outside the bench used at most {others:.2f} of {cores()} CPUs over any "
                    f"{self.window_s:g} s (1-min load at most {self.max_load:.1f}, the bench's own threads included)")
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


def neighbour_ratios(baseline: Sequence[float], contender: Sequence[float]) -> list[float]:
    """Contender run i against the mean of baseline runs i and i + 1, the ones either side of it.

    For times or CPU seconds (lower is better), so > 1 means the contender did better. Runs
    alternate B, C, B, C, ..., B: ``baseline`` holds one run more than ``contender``. Drift in
    the machine's speed between repeats hits both sides of each ratio alike.
    """
    if len(baseline) != len(contender) + 1:
        raise ValueError(f"need one baseline run more than contender runs, got {len(baseline)} and {len(contender)}")
    return [(before + after) / 2 / c for before, after, c in zip(baseline, baseline[1:], contender)]


def repeats_arg(text: str) -> int:
    """The ``--repeats`` of a bench (an argparse ``type``): a whole number of at least 1.

    Anything else is refused by argparse in one line and exit status 2, before the bench starts Ray
    or touches its data.
    """
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least 1 (got {n}); {DEFAULT_REPEATS} or more give the goal verdict a 90 % interval")
    return n


def median_interval(values: Iterable[float], coverage: float = INTERVAL_COVERAGE) -> tuple[float, float, float]:
    """A distribution-free interval for the median of what the runs were drawn from: (low, high, coverage).

    The k-th smallest and k-th largest value cover the true median with probability
    1 - 2·P(Binomial(n, 1/2) < k) whatever the distribution; k is the largest that keeps
    that at or above ``coverage``. Too few values for it (n < 5 at 0.9): (min, max) and
    the lower coverage they give, which the caller must show. Assumes independent runs;
    a paired ratio shares its neighbours' baseline runs, so read the coverage as approximate.
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_interval needs at least one value")

    def covered(k: int) -> float:
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while k + 1 <= (n + 1) // 2 and covered(k + 1) >= coverage:
        k += 1
    return xs[k - 1], xs[n - k], covered(k)


def goal_verdict(values: Iterable[float], goal: float, what: str) -> dict[str, Any]:
    """Whether ratios ``values`` (higher is better) meet ``goal``, judged on the median's interval.

    ``met`` when the whole interval is at or above the goal, ``not met`` when it is below,
    ``undecided`` when it straddles the goal (more repeats or a quieter machine decide it) or
    when too few runs give the interval less than ``INTERVAL_COVERAGE``.
    Returns the interval, its coverage, the verdict and one line in words.
    """
    xs = list(values)
    low, high, cov = median_interval(xs)
    enough = cov >= INTERVAL_COVERAGE
    state = "met" if low >= goal and enough else "not met" if high < goal and enough else "undecided"
    words = (f"{what}: median {median(xs):.3f}, {cov:.0%} interval [{low:.3f}, {high:.3f}] over {len(xs)} runs; "
             f"goal {goal:g} {state.upper()}")
    if not enough:
        words += f": too few runs for a {INTERVAL_COVERAGE:.0%} interval, use at least {DEFAULT_REPEATS} repeats"
    elif state == "undecided":
        words += ": the interval spans the goal, so these runs cannot tell; run more repeats on a quieter machine"
    return {"interval": [round(low, 3), round(high, 3)], "interval_coverage": round(cov, 3), "goal": goal,
            "goal_verdict": state, "goal_words": words}


def busy_loop(seconds: float) -> None:
    """Burn one CPU for ``seconds`` (used to load the machine in the harness test)."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1
