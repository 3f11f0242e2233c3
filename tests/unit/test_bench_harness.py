"""The bench harness flags a busy machine, so no benchmark figure taken under load passes for a quiet one."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from pathlib import Path

import pytest


@pytest.fixture
def harness(import_bench):
    return import_bench("harness")


def test_threshold_is_per_core(harness):
    n = harness.cores()
    quiet = harness.LoadWatch(load_fn=lambda: 0.4 * n, measure_cpu=False)
    quiet.sample()
    assert not quiet.busy and quiet.fields()["busy"] is False and quiet.verdict().startswith("quiet")
    loaded = harness.LoadWatch(load_fn=lambda: 0.6 * n, measure_cpu=False)
    loaded.sample()
    assert loaded.busy and loaded.verdict().startswith("BUSY")
    assert loaded.fields()["cores"] == n
    # A one-thread bench on an otherwise idle machine puts the load at ~1 itself: not busy.
    own = harness.LoadWatch(load_fn=lambda: 1.0 + 0.4 * n, own_load=1.0, measure_cpu=False)
    own.sample()
    assert not own.busy and own.fields()["own_load"] == 1.0
    other = harness.LoadWatch(load_fn=lambda: 1.0 + 0.6 * n, own_load=1.0, measure_cpu=False)
    other.sample()
    assert other.busy and "beyond the bench's own 1" in other.verdict()


def test_alternate_interleaves_and_median(harness):
    order: list[str] = []
    out = harness.alternate({"a": lambda: order.append("a") or 1.0, "b": lambda: order.append("b") or 3.0}, 3)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert out == {"a": [1.0, 1.0, 1.0], "b": [3.0, 3.0, 3.0]}
    assert harness.median([3.0, 1.0, 2.0]) == 2.0
    with pytest.raises(ValueError):
        harness.alternate({"a": lambda: 0}, 0)


@pytest.mark.timeout(120)
def test_a_run_under_artificial_load_is_flagged_busy(harness):
    """Real load, real load average (the fallback without /proc): 4 busy processes per core until the watch
    says busy (≤ 60 s)."""
    procs = [mp.Process(target=harness.busy_loop, args=(90.0,), daemon=True) for _ in range(4 * harness.cores())]
    for p in procs:
        p.start()
    try:
        with harness.LoadWatch(interval_s=0.5, measure_cpu=False) as watch:
            deadline = time.monotonic() + 60
            while not watch.busy and time.monotonic() < deadline:
                time.sleep(0.5)
        assert watch.busy, watch.samples
        assert watch.fields()["busy"] is True and "BUSY" in watch.verdict()
    finally:
        for p in procs:  # only the processes this test started
            p.terminate()
            p.join(5)
    assert os.getloadavg()[0] >= 0  # the platform has a load average at all


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")
def test_cpu_used_outside_the_bench_is_flagged_and_its_own_is_not(harness):
    """Two busy processes for ~3 s, watched twice at once: as the bench's own (they are under this process)
    and as somebody else's (the watch's tree is an idle sleeper). Only the second watch may call them
    others: the load average would count both alike."""
    sleeper = mp.Process(target=time.sleep, args=(30.0,), daemon=True)
    sleeper.start()
    busy = [mp.Process(target=harness.busy_loop, args=(3.0,), daemon=True) for _ in range(2)]
    try:
        own = harness.LoadWatch(interval_s=0.25, window_s=2.0).__enter__()
        foreign = harness.LoadWatch(interval_s=0.25, window_s=2.0, own_root=sleeper.pid).__enter__()
        assert own.measure_cpu and foreign.measure_cpu
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for p in busy:
            p.start()
        for p in busy:
            p.join(30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the busy loops, reaped by join
        own.__exit__()
        foreign.__exit__()
    finally:
        for p in [sleeper, *busy]:  # only the processes this test started
            p.terminate()
            p.join(5)
    busy_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert busy_cpu > 0.2, busy_cpu  # even on a loaded CI machine the loops get some CPU
    # Totals, not the worst window: whatever else the machine runs (another test run) counts as others in
    # both watches alike, so what separates them is this process's tree: the busy loops, plus whatever
    # else lives under this process (the suite's Ray cluster: 1.4 CPU-s in one CI run), which only the
    # sleeper's watch calls others. A worst-window comparison could not tell them apart under load:
    # with 2 cores saturated either way, both windows read ~2 CPUs.
    moved = foreign.others_cpu_seconds - own.others_cpu_seconds
    assert moved >= 0.8 * busy_cpu, (moved, busy_cpu)
    assert foreign.busy and foreign.fields()["busy"] is True and foreign.verdict().startswith("BUSY: processes outside")
    assert foreign.fields()["others_cpu_max"] == round(foreign.others_cpu, 2)


def test_median_interval_widens_to_keep_its_coverage(harness):
    # 5 runs: only (min, max) covers the median with >= 90 % (1 - 2/32 = 93.75 %).
    assert harness.median_interval([5.0, 1.0, 3.0, 2.0, 4.0]) == (1.0, 5.0, 0.9375)
    # 9 runs: the 2nd smallest and 2nd largest (1 - 2·10/512 = 96.1 %); the 3rd pair would give 82 %.
    low, high, cov = harness.median_interval(range(1, 10))
    assert (low, high) == (2, 8) and cov == pytest.approx(1 - 20 / 512)
    # 3 runs cannot reach 90 %: (min, max) and the 75 % they give, for the caller to show.
    assert harness.median_interval([1.0, 2.0, 3.0]) == (1.0, 3.0, 0.75)
    with pytest.raises(ValueError):
        harness.median_interval([])


def test_goal_verdict_says_undecided_when_the_interval_spans_the_goal(harness):
    met = harness.goal_verdict([0.98, 1.01, 0.99, 1.05, 0.975], 0.97, "ray/plain")
    assert met["goal_verdict"] == "met" and met["interval"] == [0.975, 1.05]
    missed = harness.goal_verdict([0.90, 0.91, 0.88, 0.93, 0.92], 0.97, "ray/plain")
    assert missed["goal_verdict"] == "not met" and "NOT MET" in missed["goal_words"]
    # A median above the goal with one run below it: the runs cannot tell.
    split = harness.goal_verdict([0.95, 0.99, 1.00, 0.98, 1.02], 0.97, "ray/plain")
    assert split["goal_verdict"] == "undecided" and "cannot tell" in split["goal_words"]
    # 3 runs all above the goal still decide nothing: (min, max) covers the median only 75 % of the time.
    few = harness.goal_verdict([1.0, 1.1, 1.2], 0.97, "ray/plain")
    assert few["goal_verdict"] == "undecided" and few["interval_coverage"] == 0.75
    assert "too few runs" in few["goal_words"]


def test_repeats_arg_accepts_whole_numbers_from_one(harness):
    import argparse

    assert harness.repeats_arg("1") == 1 and harness.repeats_arg("9") == 9
    for bad in ("0", "-1", "2.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            harness.repeats_arg(bad)


def test_neighbour_ratios_judge_each_run_against_the_baselines_either_side(harness):
    # Baseline 10, 12, 14 s around contender runs of 11 and 14 s: 11/11 and 13/14.
    assert harness.neighbour_ratios([10.0, 12.0, 14.0], [11.0, 14.0]) == pytest.approx([1.0, 13 / 14])
    with pytest.raises(ValueError, match="one baseline run more"):
        harness.neighbour_ratios([10.0, 12.0], [11.0, 14.0])
