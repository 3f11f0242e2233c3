"""bench/train.py's Ray-free DDP contender is real DDP: two ranks that end with the same weights."""

from __future__ import annotations

import math

import pytest


@pytest.fixture
def bench_train(import_bench):
    return import_bench("train")


def test_the_plain_ddp_contender_trains_two_ranks_in_step(bench_train):
    cfg = bench_train.config(steps=20, threads=1, workers=2)
    out = bench_train.run_plain_ddp(cfg, bench_train.clips(32), threads=1)
    # run_plain_ddp itself refuses ranks whose weights differ; this checks it returned figures.
    assert out["what"] == "plain_ddp" and out["torch_threads"] == 1
    assert out["step_time_s"] > 0 and out["cpu_s_per_step"] > 0
    assert math.isfinite(out["final_loss"]) and math.isfinite(out["weights_checksum"])


def test_a_plain_ddp_rank_that_dies_stops_the_bench_with_one_line(bench_train):
    cfg = bench_train.config(steps=20, threads=1, workers=2)
    one_channel = bench_train.clips(32)[..., :1]  # the VAE wants 3 colour channels: both ranks fail in forward
    with pytest.raises(SystemExit, match=r"a plain DDP rank failed \(exit codes \["):
        bench_train.run_plain_ddp(cfg, one_channel, threads=1)


@pytest.mark.parametrize("bad", ["0", "-2", "five"])
def test_a_bad_repeats_stops_the_bench_with_one_line_before_it_starts(bench_train, capsys, bad):
    with pytest.raises(SystemExit) as stop:
        bench_train.main(["--repeats", bad])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument --repeats:" in error
    assert ("must be at least 1" in error) if bad != "five" else ("is not a whole number" in error)


def test_a_rank_niceness_outside_0_to_19_stops_the_bench_before_it_starts(bench_train, capsys):
    with pytest.raises(SystemExit) as stop:
        bench_train.main(["--rank-niceness", "25"])
    assert stop.value.code == 2
    assert "error: argument --rank-niceness: invalid choice: 25" in capsys.readouterr().err


def test_the_rank_niceness_reaches_the_ray_runs_config(bench_train):
    assert bench_train.config(20, 1, 2).train_vae.worker_niceness == 0  # the bench's default: ranks level with plain
    assert bench_train.config(20, 1, 2, niceness=7).train_vae.worker_niceness == 7
