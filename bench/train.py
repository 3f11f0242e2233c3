"""Training overhead of Ray Train: VAE steps/s through ``train_vae_ray`` vs the plain ``fit_vae`` loop.

Same model, batch, clips and thread count, one invocation. The plain loop runs
in this process on numpy batches held in memory; the Ray run streams the same
clips from a materialized Ray Dataset into one Ray Train worker (DDP setup,
dataset shard, rank-0 tracking hooks and the final checkpoint included). Both
time the steady state the same way: the mean step time of every logging
window but the first, so Ray's start-up (cluster, worker, dataset) and the
first steps' warm-up are excluded from both. Each run also reports process
CPU seconds per step (all threads: Ray's data prefetch and RPC threads count
against it), the work per step independent of other load on the machine.
After one untimed plain run (a fresh process's first run pays for growing
its heap), runs alternate plain, Ray, plain, Ray, ..., plain (``--repeats``
Ray runs); each Ray run is compared with the mean of the plain runs on either
side of it, which cancels drift from other load on a shared machine, and the
summary gives the median of those ratios, its distribution-free interval
(the 5 default runs' min to max cover the true median with 94 %) and whether
the goal is met, not met, or undecided by these runs (``goal_verdict``). The Ray Train ranks run at
nice 0 like the plain loop (``train_vae.worker_niceness=0``; vidgen's default leaves them at Ray's
15); Ray's helper actors keep Ray's nice 15, as they do in vidgen's runs. Every contender's
malloc keeps freed memory for the next step, as vidgen's training workers do
(``train_vae.keep_freed_memory``), so that setting moves no ratio.

    .venv/bin/python bench/train.py [--threads 1] [--workers 1] [--steps 60] [--repeats 5] [--rank-niceness 0]

With ``--workers N`` the Ray run is N DDP workers of ``threads`` CPUs each on
batch 8/N apiece, and the plain loop runs the same global batch of 8 on
N·threads torch threads: the same work on the same CPUs, one process against N.
A third contender then runs the same loop in N plain torch DDP processes (gloo on
127.0.0.1, no Ray; runs go plain, DDP, Ray, plain, DDP, ...): Ray over plain DDP
is what Ray Train itself costs, plain DDP over the one process is what DDP costs.
The DDP contender checks that its ranks end with the same weights.

Prints one JSON line per run, the goal verdicts in words, and one summary line (goal ≥ 0.97).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidgen_core.config import PipelineConfig  # noqa: E402

from harness import DEFAULT_REPEATS, LoadWatch, goal_verdict, neighbour_ratios, repeats_arg  # noqa: E402  (bench/harness.py)
from vidgen_core.train.allocator import keep_freed_memory  # noqa: E402
from vidgen_core.train.fit_vae import fit_vae  # noqa: E402

CLIP_LEN, SIZE, NUM_CLIPS = 8, 32, 64
WARMUP_STEPS = 100  # the untimed plain run before the timed ones
GOAL = 0.97  # Ray Train's step rate over the plain loop's (issue 14)


def clips(n: int, seed: int = 0) -> np.ndarray:
    """Moving bright squares on a dark background: uint8 (n, T, S, S, 3)."""
    rng = np.random.default_rng(seed)
    out = np.full((n, CLIP_LEN, SIZE, SIZE, 3), 20, dtype=np.uint8)
    for i in range(n):
        colour, (x, y) = rng.integers(80, 256, size=3), rng.integers(0, SIZE // 2, size=2)
        for f in range(CLIP_LEN):
            xx = (x + 2 * f) % (SIZE - 8)
            out[i, f, y : y + 8, xx : xx + 8] = colour
    return out


GLOBAL_BATCH = 8


def config(steps: int, threads: int, workers: int = 1, niceness: int = 0) -> PipelineConfig:
    """The Ray run's config: ``workers`` DDP workers of ``threads`` CPUs at nice ``niceness``, GLOBAL_BATCH / workers clips each."""
    if GLOBAL_BATCH % workers:
        raise SystemExit(f"--workers must divide the global batch of {GLOBAL_BATCH}")
    return PipelineConfig.model_validate({
        "ingest": {"clip_len": CLIP_LEN, "size": SIZE},
        "vae": {"base_channels": 16, "channel_mult": [1, 2]},
        "train_vae": {
            "steps": steps, "batch_size": GLOBAL_BATCH // workers, "lr": 1e-3, "log_every": 10,
            "checkpoint_every": 10**6, "num_workers": workers, "cpus_per_worker": float(threads), "max_failures": 0,
            "worker_niceness": niceness,
        },
    })


def steady(windows: list[dict[str, float]]) -> float:
    rest = [m["step_time_s"] for m in windows[1:]]
    return sum(rest) / len(rest)


class CpuClock:
    """Process CPU seconds per step over every logging window but the first (as Rank0Tracker measures it)."""

    def __init__(self) -> None:
        self.windows: list[tuple[int, float]] = []
        self._step, self._cpu = 0, time.process_time()

    def on_log(self, step: int) -> None:
        cpu = time.process_time()
        self.windows.append((step - self._step, cpu - self._cpu))
        self._step, self._cpu = step, cpu

    def per_step(self) -> float:
        rest = self.windows[1:]
        return sum(c for _, c in rest) / sum(n for n, _ in rest)


def timed_fit(cfg: PipelineConfig, clip_array: np.ndarray, model: torch.nn.Module | None = None) -> tuple[list[dict[str, float]], CpuClock]:
    """``fit_vae`` on ``clip_array`` cycled in batches of ``train_vae.batch_size``: (logging windows, CPU clock)."""
    b = cfg.train_vae.batch_size
    batches = [(clip_array[i : i + b], np.zeros(b, dtype=np.int64)) for i in range(0, len(clip_array) - b + 1, b)]

    def cycle():
        while True:
            yield from batches

    windows: list[dict[str, float]] = []
    clock = CpuClock()

    def on_log(step: int, metrics: dict[str, float]) -> None:
        windows.append(metrics)
        clock.on_log(step)

    fit_vae(cfg.vae, cfg.train_vae, cycle(), on_log, model)
    return windows, clock


def run_plain(cfg: PipelineConfig, data: np.ndarray, threads: int) -> dict[str, Any]:
    """The plain loop on the Ray run's global batch, one process of ``threads`` torch threads."""
    torch.set_num_threads(threads)
    if cfg.train_vae.keep_freed_memory:  # as the Ray run's workers do (train_vae.keep_freed_memory)
        keep_freed_memory()
    cfg = cfg.model_copy(update={"train_vae": cfg.train_vae.model_copy(update={"batch_size": GLOBAL_BATCH, "num_workers": 1})})
    t0 = time.perf_counter()
    windows, clock = timed_fit(cfg, data)
    return {"what": "plain", "step_time_s": steady(windows), "cpu_s_per_step": clock.per_step(),
            "wall_s": time.perf_counter() - t0, "torch_threads": torch.get_num_threads(), "niceness": os.nice(0),
            "final_loss": windows[-1]["loss"]}


def _ddp_rank(rank: int, world: int, port: int, cfg: PipelineConfig, data: np.ndarray, threads: int, out) -> None:
    """One rank of the Ray-free DDP loop: gloo on 127.0.0.1, the model prepared as ``vae_worker`` prepares it."""
    import torch.distributed as dist

    from vidgen_core.models.vae import VideoVAE
    from vidgen_core.train.precision import resolve_numerics

    torch.set_num_threads(threads)
    if cfg.train_vae.keep_freed_memory:
        keep_freed_memory()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    tc = cfg.train_vae
    torch.manual_seed(tc.seed)
    # The same wrapping Ray's prepare_model does on CPU: DDP with its default settings.
    model = torch.nn.parallel.DistributedDataParallel(resolve_numerics(tc, "cpu").prepare(VideoVAE(cfg.vae)))
    windows, clock = timed_fit(cfg, data[rank::world], model)  # an equal split, as Ray Data gives each rank
    # Every rank sends a checksum of its weights: ranks that trained in step end identical.
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    figures = {"step_time_s": steady(windows), "cpu_s_per_step": clock.per_step() * world,
               "torch_threads": torch.get_num_threads(), "niceness": os.nice(0), "final_loss": windows[-1]["loss"]}
    out.put((rank, checksum, figures if rank == 0 else None))
    dist.destroy_process_group()


def run_plain_ddp(cfg: PipelineConfig, data: np.ndarray, threads: int) -> dict[str, Any]:
    """The plain loop in ``num_workers`` torch DDP processes (gloo, no Ray): what Ray Train wraps.

    Each rank runs ``fit_vae`` on its equal split, batch ``global / workers``, ``threads``
    torch threads; the figures are rank 0's (CPU per step times the ranks, as for Ray).
    """
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    world, ctx = cfg.train_vae.num_workers, mp.get_context("spawn")
    out = ctx.Queue()
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_ddp_rank, args=(r, world, port, cfg, data, threads, out)) for r in range(world)]
    for proc in procs:
        proc.start()
    replies: list[tuple[int, float, dict[str, Any] | None]] = []
    while len(replies) < world:  # a rank that dies never replies: stop all of them and say so
        try:
            replies.append(out.get(timeout=5))
        except queue.Empty:
            if any(proc.exitcode not in (None, 0) for proc in procs):
                for proc in procs:
                    proc.terminate()
                raise SystemExit(f"a plain DDP rank failed (exit codes {[proc.exitcode for proc in procs]})") from None
    replies.sort(key=lambda reply: reply[0])
    for proc in procs:
        proc.join()
    checksums = [c for _, c, _ in replies]
    if max(checksums) - min(checksums) > 1e-6 * max(1.0, abs(checksums[0])):
        raise SystemExit(f"the plain DDP ranks' weights differ after training (checksums {checksums}): no all-reduce?")
    return {"what": "plain_ddp", **replies[0][2], "weights_checksum": checksums[0], "wall_s": time.perf_counter() - t0}


def run_ray(cfg: PipelineConfig, data: np.ndarray, threads: int, root: str) -> dict[str, Any]:
    import ray

    from vidgen_core.train.ray_train import train_vae_ray

    ds = ray.data.from_items([{"frames": f, "label": 0} for f in data]).materialize()
    t0 = time.perf_counter()
    out = train_vae_ray(cfg, os.path.join(root, "no-shards"), os.path.join(root, "model"), os.path.join(root, "ray"),
                        f"bench-{int(time.time())}", None, None, dataset=ds)
    # Rank 0 measures its own process; the ranks do equal work, so the run's CPU is that times the workers.
    cpu = out["steady_cpu_s_per_step"] * cfg.train_vae.num_workers
    return {"what": "ray", "step_time_s": out["steady_step_time_s"], "cpu_s_per_step": cpu,
            "wall_s": time.perf_counter() - t0, "torch_threads": out["torch_threads"], "niceness": out["niceness"],
            "final_loss": out["final_loss"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads in both runs (= Ray worker CPUs)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train DDP workers (the plain loop gets their CPUs)")
    p.add_argument("--steps", type=int, default=60, help="steps per run; windows of 10, the first is warm-up")
    p.add_argument("--repeats", type=repeats_arg, default=DEFAULT_REPEATS, help="Ray runs, each between two plain runs")
    p.add_argument("--rank-niceness", type=int, default=0, choices=range(20), metavar="0..19",
                   help="nice of the Ray Train ranks (train_vae.worker_niceness; Ray's helpers keep 15)")
    args = p.parse_args(argv)
    import ray

    cpus = args.threads * args.workers
    ray.init(address="local", num_cpus=cpus + 1, include_dashboard=False, log_to_driver=False)
    cfg, data = config(args.steps, args.threads, args.workers, args.rank_niceness), clips(NUM_CLIPS)
    info = {"bench": "train", "model": "vae base16 mult[1,2] 2x4x4", "clip": [CLIP_LEN, SIZE, SIZE],
            "batch": GLOBAL_BATCH, "steps": args.steps, "threads": args.threads, "workers": args.workers,
            "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    watch = LoadWatch(own_load=cpus).__enter__()  # each contender keeps `cpus` CPUs busy
    # With N > 1 workers a third contender, the same loop in N plain torch DDP processes,
    # separates what Ray Train costs from what DDP itself costs against one process.
    ddp = args.workers > 1
    # One plain run first, untimed. This process's first run of the loop paid ~5,700 minor page faults
    # a step while glibc's main arena grew, its later runs 23-1,000 (stop 39, bench/RESULTS.md): timed,
    # the first plain run was the slowest of the bench and flattered the Ray run beside it.
    run_plain(config(WARMUP_STEPS, args.threads, args.workers), data, cpus)
    plain, ddps, rays = [run_plain(cfg, data, cpus)], [], []
    if ddp:
        ddps.append(run_plain_ddp(cfg, data, args.threads))
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.repeats):
            rays.append(run_ray(cfg, data, args.threads, os.path.join(root, str(i))))
            plain.append(run_plain(cfg, data, cpus))
            if ddp:
                ddps.append(run_plain_ddp(cfg, data, args.threads))
    ray.shutdown()
    watch.__exit__()

    def versus(runs: list[dict[str, Any]], key: str) -> list[float]:
        """Each Ray run's ``key`` against the mean of the ``runs`` on either side of it (> 1: Ray is faster)."""
        return neighbour_ratios([x[key] for x in runs], [r[key] for r in rays])

    ratios, cpu_ratios = versus(plain, "step_time_s"), versus(plain, "cpu_s_per_step")
    ddp_ratios, ddp_cpu_ratios = (versus(ddps, "step_time_s"), versus(ddps, "cpu_s_per_step")) if ddp else ([], [])
    for i, r in enumerate(rays):
        r["ratio_vs_neighbouring_plain"], r["cpu_ratio_vs_neighbouring_plain"] = ratios[i], cpu_ratios[i]
        if ddp:
            r["ratio_vs_neighbouring_plain_ddp"], r["cpu_ratio_vs_neighbouring_plain_ddp"] = ddp_ratios[i], ddp_cpu_ratios[i]
    order = [x for triple in zip(plain, ddps or [None] * len(plain), rays + [None]) for x in triple if x is not None]
    for r in order:
        print(json.dumps({**info, **r, "steps_per_s": 1.0 / r["step_time_s"], **watch.fields()}), flush=True)

    def mean_rate(runs: list[dict[str, Any]]) -> float:
        return 1.0 / float(np.mean([r["step_time_s"] for r in runs]))

    def listed(xs: list[float]) -> str:
        return f"median {float(np.median(xs)):.3f} [{', '.join(f'{x:.3f}' for x in xs)}]"

    ddp_words = (
        f"; against the same loop in {args.workers} plain torch DDP processes ({mean_rate(ddps):.2f} steps/s, no Ray): "
        f"ray/plain-DDP {listed(ddp_ratios)}, CPU-time ratio median {float(np.median(ddp_cpu_ratios)):.3f}"
        if ddp else ""
    )
    print(
        f"SUMMARY train: plain fit {mean_rate(plain):.2f} steps/s, Ray Train {mean_rate(rays):.2f} steps/s (means over "
        f"{len(plain)} plain / {len(rays)} Ray runs); ratio ray/plain {listed(ratios)} (goal >= {GOAL}); CPU-time ratio "
        f"(plain CPU s/step over Ray's) median {float(np.median(cpu_ratios)):.3f}{ddp_words}; threads "
        f"plain={plain[0]['torch_threads']} ray={args.workers}x{rays[0]['torch_threads']}; nice plain={plain[0]['niceness']} "
        f"ray={rays[0]['niceness']}; load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    summary = {"summary": "train", "workers": args.workers, "ratio_ray_over_plain_median": round(float(np.median(ratios)), 3),
               "cpu_ratio_median": round(float(np.median(cpu_ratios)), 3)}
    if ddp:
        summary["ratio_ray_over_plain_ddp_median"] = round(float(np.median(ddp_ratios)), 3)
        summary["cpu_ratio_vs_plain_ddp_median"] = round(float(np.median(ddp_cpu_ratios)), 3)
    # The goal judged on each median's interval, not on the median alone: single runs on a noisy VM
    # range over 15-25 %, so a median a few per cent from the goal can fall on either side of it.
    verdicts = {"ray_over_plain": goal_verdict(ratios, GOAL, "Ray Train / plain loop, step rate")}
    if ddp:
        verdicts["ray_over_plain_ddp"] = goal_verdict(ddp_ratios, GOAL, "Ray Train / plain DDP, step rate")
    for v in verdicts.values():
        print(v["goal_words"], flush=True)
    print(json.dumps({**summary, "goal": GOAL, "goal_verdicts": {k: {f: v[f] for f in ("interval", "interval_coverage", "goal_verdict")}
                                                                   for k, v in verdicts.items()},
                      "repeats": len(rays), **watch.fields(), "verdict": watch.verdict()}), flush=True)

if __name__ == "__main__":
    main()
