"""Ingest throughput: vidgen ingest (Ray Data) against bare PyAV decode+resize in N processes.

One set of videos (generated moving shapes at 256x192 plus 1280x720 H.264
files, all made with PyAV), one run, three contenders, each timed from start
to the last byte written:

- ``pyav``: the ceiling. N processes (N = cores), each decodes whole files with
  PyAV and converts every frame in one swscale pass (AREA) to the same size,
  then centre-crops; nothing is written. swscale runs on one thread per
  process, as in ingest (``--sws-threads 0``: PyAV's default, a slice thread
  per core, which costs about twice the CPU at these sizes).
- ``pyav_parquet``: the same, and each process also cuts clips of 16 frames and
  writes them with pyarrow to Parquet (the shard schema and write options of
  ingest): the write's cost on its own, beside the decode.
- ``vidgen``: ``ingest_videos`` on a local Ray with N CPUs (clip_len 16, no
  overlap, so every frame but a short tail ends up in a clip), writing Parquet shards.
- ``ray_read_videos``: Ray's built-in ``read_videos`` (decord) with the same
  resize, written to Parquet, when decord is installed.

Throughput is *source frames per second*: the frames in the input set divided by
the wall time, so the ratios are ratios of wall time on the same work.
Prints one JSON line per measurement, the goal verdicts in words and a summary
line with the ratios. The verdicts judge each repeat's vidgen run against the
mean of the PyAV runs on either side of it (a last PyAV run closes the
sequence), wall and CPU, on the median's distribution-free
interval (``goal_verdict``): met, not met, or undecided by these repeats.
vidgen's CPU is also split by process: the Ray workers that run the read tasks
(decode, convert, write, and Ray's own work per task inside them), the driver
(Ray Data's executor) and Ray's other processes (GCS, raylet, agents, Ray Data's
actors); ``vidgen_read_workers_over_pyav_per_cpu_second`` is the per-CPU ratio
with the driver and those daemons left out.

    .venv/bin/python bench/ingest.py [--data /tmp/vidgen-bench-ingest] [--repeats 5] [--scale 10]

``--scale K`` runs on K hard-linked copies of the set (K x the frames, no extra
disk), the size at which Ray's fixed costs per run have faded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidgen_core.config import DataConfig, IngestConfig, SynthConfig  # noqa: E402
from vidgen_core.data.schema import PARQUET_WRITE_OPTIONS, clip_schema  # noqa: E402
from vidgen_core.video.decode import probe, scaled_size  # noqa: E402
from vidgen_core.video.synth import generate_dataset  # noqa: E402

from harness import DEFAULT_REPEATS, LoadWatch, goal_verdict, median, neighbour_ratios, repeats_arg  # noqa: E402  (bench/harness.py)

SIZE = 128
CLIP_LEN = 16
GOAL = 0.9  # vidgen over bare PyAV, wall and per CPU-second (issue 14)
_SWS_THREADS = 1  # swscale threads of the PyAV contenders (--sws-threads; set before the pools fork)


def make_data(root: Path, hd_files: int, hd_seconds: float) -> list[Path]:
    """Generated videos (cached under ``root``): small moving shapes and 1280x720 H.264 files."""
    small = SynthConfig(
        classes=["circle", "square", "triangle"], videos_per_class=8, width=256, height=192,
        fps_choices=[24.0, 30.0], min_duration_s=3.0, max_duration_s=6.0, seed=11,
    )
    hd = SynthConfig(
        classes=["cross"], videos_per_class=hd_files, width=1280, height=720,
        fps_choices=[30.0], min_duration_s=hd_seconds, max_duration_s=hd_seconds, seed=12,
    )
    generate_dataset(small, root / "small")
    generate_dataset(hd, root / "hd")
    return sorted(p for p in root.rglob("*.mp4"))


def scaled(root: Path, files: list[Path], scale: int) -> tuple[Path, list[Path]]:
    """``scale`` hard-linked copies of ``files`` under a sibling of ``root`` (cached): same bytes, K x the work."""
    if scale == 1:
        return root, files
    dest = root.with_name(f"{root.name}-x{scale}")
    out = []
    for k in range(scale):
        for f in files:
            link = dest / f"copy{k:02d}" / f.relative_to(root)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, link)
            out.append(link)
    return dest, out


# ---------------------------------------------------------------- bare PyAV ceiling


def _converted_frames(path: str) -> Iterator[np.ndarray]:
    """Every frame of ``path``, converted like ingest does: one swscale pass (AREA) to the short side
    SIZE, then a centre crop; yields (SIZE, SIZE, 3) uint8 views into swscale's output."""
    with av.open(path) as c:
        for frame in c.decode(c.streams.video[0]):
            sw, sh = scaled_size(frame.width, frame.height, SIZE)
            rgb = frame.to_ndarray(width=sw, height=sh, format="rgb24", interpolation="AREA", threads=_SWS_THREADS)
            y0, x0 = (sh - SIZE) // 2, (sw - SIZE) // 2
            yield rgb[y0 : y0 + SIZE, x0 : x0 + SIZE]


def _decode_resize(path: str) -> int:
    """Decode and convert every frame (``_converted_frames``), copying each out once; returns the frame count."""
    n = 0
    for crop in _converted_frames(path):
        np.ascontiguousarray(crop)
        n += 1
    return n


_OUT_DIR = ""  # the pyav_parquet contender's output folder (set before the pool forks)


def _decode_resize_write(path: str) -> int:
    """``_decode_resize``, then clips of CLIP_LEN frames written to ``_OUT_DIR`` as Parquet with pyarrow:
    the shard schema and write options of ingest, a row group per 64 clips (rows_per_shard)."""
    shape = (CLIP_LEN, SIZE, SIZE, 3)
    table_schema = clip_schema(shape)
    width = table_schema.field("frames").type.byte_width
    block = np.empty((64, *shape), dtype=np.uint8)
    name = Path(path).stem
    n = rows = 0
    with pq.ParquetWriter(os.path.join(_OUT_DIR, f"{name}-{os.getpid()}-{time.time_ns()}.parquet"),
                          table_schema, **PARQUET_WRITE_OPTIONS) as writer:
        def flush(count: int) -> None:
            meta = {f.name: pa.array([name] * count if f.type == pa.string() else [0] * count, type=f.type)
                    for f in table_schema if f.name != "frames"}
            pixels = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), count, [None, pa.py_buffer(block[:count])])
            writer.write_table(pa.Table.from_arrays([*meta.values(), pixels], schema=table_schema))

        for crop in _converted_frames(path):
            block[rows, n % CLIP_LEN] = crop
            n += 1
            if n % CLIP_LEN == 0:
                rows += 1
                if rows == len(block):
                    flush(rows)
                    rows = 0
        if rows:
            flush(rows)
    return n


def run_pyav(files: list[Path], procs: int, write_to: Path | None = None) -> tuple[float, int, float]:
    """(wall seconds, frames, CPU seconds of the worker processes); with ``write_to``, clips are also
    written there as Parquet (``_decode_resize_write``)."""
    global _OUT_DIR
    work = _decode_resize
    if write_to is not None:
        shutil.rmtree(write_to, ignore_errors=True)
        write_to.mkdir(parents=True)
        _OUT_DIR, work = str(write_to), _decode_resize_write
    # Largest first, one file per task: the same balancing ingest does.
    order = sorted((str(p) for p in files), key=lambda p: -os.path.getsize(p))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with mp.get_context("fork").Pool(procs) as pool:
        t0 = time.perf_counter()
        frames = sum(pool.imap_unordered(work, order, chunksize=1))
        wall = time.perf_counter() - t0
        # Let the workers exit by themselves: the pool's exit would SIGTERM them, and once Ray is up the
        # forked workers carry its fatal-signal handler, which prints a stack dump for every one.
        pool.close()
        pool.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers are reaped by now
    return wall, frames, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


CPU_ROLES = ("driver", "read_workers", "ray_other")


def _role(proc: Any, me: int) -> str:
    """``driver`` (this process), ``read_workers`` (Ray worker processes between or inside read tasks:
    titled ``ray::IDLE`` or after the read operator) or ``ray_other`` (GCS, raylet, dashboard agent,
    log monitor, Ray Data's stats and autoscaling actors, ...)."""
    if proc.pid == me:
        return "driver"
    title = " ".join(proc.cmdline())
    if title.startswith("ray::") and ("IDLE" in title or "Read" in title):
        return "read_workers"
    return "ray_other"


def tree_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (role, user + system CPU seconds so far) of this process and everything under it."""
    import psutil  # vendored by Ray, importable once ray is

    out: dict[int, tuple[str, float]] = {}
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = (_role(p, me.pid), t.user + t.system)
        except psutil.NoSuchProcess:
            pass
    return out


def cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each role used between two :func:`tree_cpu` snapshots (a process is counted in its
    role at ``after``: a worker that ran read tasks is ``ray::IDLE`` again by then)."""
    used = dict.fromkeys(CPU_ROLES, 0.0)
    for pid, (role, seconds) in after.items():
        used[role] += seconds - before.get(pid, (role, 0.0))[1]
    return used


# ---------------------------------------------------------------- vidgen ingest and Ray read_videos


def run_vidgen(src: Path, out: Path) -> tuple[float, dict]:
    from vidgen_core.data.ingest import ingest_videos

    shutil.rmtree(out, ignore_errors=True)
    cfg = IngestConfig(clip_len=CLIP_LEN, size=SIZE, rows_per_shard=64)
    t0 = time.perf_counter()
    result = ingest_videos(str(src), str(out), cfg, DataConfig())
    return time.perf_counter() - t0, result.manifest


def run_read_videos(files: list[Path], out: Path) -> float | str:
    import ray.data

    try:
        import decord  # noqa: F401
    except ImportError:
        return "decord is not installed"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    ds = ray.data.read_videos([str(p) for p in files], resize=(SIZE, SIZE))
    ds.write_parquet(str(out), **PARQUET_WRITE_OPTIONS)  # the same Parquet settings as ingest
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "vidgen-bench-ingest"))
    ap.add_argument("--hd-files", type=int, default=8)
    ap.add_argument("--hd-seconds", type=float, default=40.0)
    ap.add_argument("--repeats", type=repeats_arg, default=DEFAULT_REPEATS, help="alternating pyav/vidgen runs; medians reported")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--scale", type=int, default=1, help="run on this many hard-linked copies of the set")
    ap.add_argument("--sws-threads", type=int, default=1,
                    help="swscale threads of the PyAV contenders: 1 as in ingest, 0 for PyAV's default (one per core)")
    args = ap.parse_args()
    global _SWS_THREADS
    _SWS_THREADS = args.sws_threads

    base = Path(args.data)
    base_files = make_data(base, args.hd_files, args.hd_seconds)
    base_frames = sum(probe(str(p)).num_frames for p in base_files)
    hd = sum(1 for p in base_files if probe(str(p)).width == 1280) * args.scale
    root, files = scaled(base, base_files, args.scale)
    total = base_frames * args.scale
    print(json.dumps({"data": str(root), "scale": args.scale, "files": len(files), "hd_1280x720": hd,
                      "source_frames": total, "procs": args.procs, "size": SIZE, "clip_len": CLIP_LEN,
                      "pyav_sws_threads": args.sws_threads}), flush=True)

    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(address="local", num_cpus=args.procs, include_dashboard=False, log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="vidgen-bench-out-"))
    try:
        # Warm-up outside the clock: Ray workers start and import PyAV/pyarrow once per process.
        warm = work / "warm-src"
        shutil.copytree(base / "small" / "circle", warm / "circle")
        run_vidgen(warm, work / "warm-out")

        names = ("pyav", "pyav_parquet", "vidgen")
        times: dict[str, list[float]] = {k: [] for k in names}
        cpus: dict[str, list[float]] = {k: [] for k in names}
        roles: dict[str, list[float]] = {k: [] for k in CPU_ROLES}  # vidgen's CPU by process role
        watch = LoadWatch(own_load=args.procs).__enter__()  # each contender keeps `procs` CPUs busy
        for rep in range(args.repeats):  # alternating contenders: drift in other load hits all of them
            for name in ("pyav", "pyav_parquet"):
                t, n, cpu = run_pyav(files, args.procs, work / "pyav-out" if name == "pyav_parquet" else None)
                assert n == total, (n, total)
                times[name].append(t)
                cpus[name].append(cpu)
                print(json.dumps({"run": name, "repeat": rep, "seconds": round(t, 3),
                                  "frames_per_s": round(total / t, 1), "cpu_seconds": round(cpu, 2),
                                  **watch.fields()}), flush=True)
            cpu0 = tree_cpu()
            t, manifest = run_vidgen(root, work / "shards")
            split = cpu_by_role(cpu0, tree_cpu())
            cpu = sum(split.values())
            times["vidgen"].append(t)
            cpus["vidgen"].append(cpu)
            for role, seconds in split.items():
                roles[role].append(seconds)
            clips = manifest["num_clips"]
            print(json.dumps({"run": "vidgen", "repeat": rep, "seconds": round(t, 3), "frames_per_s": round(total / t, 1),
                              "clips": clips, "clip_frames_per_s": round(clips * CLIP_LEN / t, 1),
                              "errors": manifest["num_files_with_errors"], "cpu_seconds": round(cpu, 2),
                              **{f"cpu_seconds_{k}": round(v, 2) for k, v in split.items()},
                              "over_pyav_this_repeat": round(times["pyav"][-1] / t, 3),
                              **watch.fields()}), flush=True)
        # One more bare PyAV run closes the sequence, so that every vidgen run sits between two PyAV runs
        # and is judged against their mean (drift within a repeat cancels, as in bench/train.py).
        closing_t, n, closing_cpu = run_pyav(files, args.procs)
        assert n == total, (n, total)
        print(json.dumps({"run": "pyav", "repeat": "closing", "seconds": round(closing_t, 3),
                          "frames_per_s": round(total / closing_t, 1), "cpu_seconds": round(closing_cpu, 2),
                          **watch.fields()}), flush=True)
        best = {k: median(v) for k, v in times.items()}
        cpu_best = {k: median(v) for k, v in cpus.items()}
        t = run_read_videos(files, work / "read_videos")
        if isinstance(t, float):
            best["ray_read_videos"] = t
            line = {"run": "ray_read_videos", "seconds": round(t, 3), "frames_per_s": round(total / t, 1)}
            print(json.dumps(line), flush=True)
        else:
            print(json.dumps({"run": "ray_read_videos", "skipped": t}), flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    watch.__exit__()

    fps = {k: total / v for k, v in best.items()}

    # Each vidgen run against the mean of the PyAV runs on either side of it (> 1: vidgen is better).
    paired_wall = neighbour_ratios([*times["pyav"], closing_t], times["vidgen"])
    paired_cpu = neighbour_ratios([*cpus["pyav"], closing_cpu], cpus["vidgen"])
    summary = {
        "summary": "ingest",
        "pyav_frames_per_s": round(fps["pyav"], 1),
        "vidgen_frames_per_s": round(fps["vidgen"], 1),
        "vidgen_over_pyav": round(fps["vidgen"] / fps["pyav"], 3),
        "goal": GOAL,
        # Frames per CPU second (all processes of each contender, Ray's own included): the
        # same ratio with the other users of a shared machine taken out.
        "vidgen_over_pyav_per_cpu_second": round(cpu_best["pyav"] / cpu_best["vidgen"], 3),
        # Where vidgen's CPU went (medians): the read workers decode, convert and write (plus Ray's
        # per-task work inside them); the driver runs Ray Data's executor; Ray's other processes.
        "vidgen_cpu_seconds_by_role": {k: round(median(v), 2) for k, v in roles.items()},
        # The same ratio counting the read workers alone: how far the read work itself is from bare PyAV.
        "vidgen_read_workers_over_pyav_per_cpu_second": round(cpu_best["pyav"] / median(roles["read_workers"]), 3),
        # Each repeat's vidgen run against the mean of the PyAV runs on either side: drift cancels.
        "vidgen_over_pyav_paired_median": round(median(paired_wall), 3),
        "pyav_parquet_frames_per_s": round(fps["pyav_parquet"], 1),
        "vidgen_over_pyav_parquet": round(fps["vidgen"] / fps["pyav_parquet"], 3),
        "vidgen_over_pyav_parquet_per_cpu_second": round(cpu_best["pyav_parquet"] / cpu_best["vidgen"], 3),
        "scale": args.scale,
        "pyav_sws_threads": args.sws_threads,
    }
    if "ray_read_videos" in fps:
        summary["ray_read_videos_frames_per_s"] = round(fps["ray_read_videos"], 1)
        summary["vidgen_over_ray_read_videos"] = round(fps["vidgen"] / fps["ray_read_videos"], 3)
    # The goal judged per repeat (vidgen against the PyAV runs on either side), on the median's interval:
    # identical work moves by 15-25 % between runs on a noisy VM, more than the goal's margin.
    verdicts = {
        "wall": goal_verdict(paired_wall, GOAL, "vidgen / bare PyAV, wall, each run against its neighbours"),
        "per_cpu_second": goal_verdict(paired_cpu, GOAL, "vidgen / bare PyAV, per CPU-second, each run against its neighbours"),
    }
    for v in verdicts.values():
        print(v["goal_words"], flush=True)
    summary["goal_verdicts"] = {k: {f: v[f] for f in ("interval", "interval_coverage", "goal_verdict")}
                                for k, v in verdicts.items()}
    summary.update({"repeats": args.repeats, "statistic": "median", **watch.fields(), "verdict": watch.verdict()})
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
