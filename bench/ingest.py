"""Ingest throughput: vidgen ingest (Ray Data) against bare PyAV decode+resize in N processes.

One set of videos (generated moving shapes at 256x192 plus 1280x720 H.264
files, all made with PyAV), one run, three contenders, each timed from start
to the last byte written:

- ``pyav``: the ceiling. N processes (N = cores), each decodes whole files with
  PyAV and converts every frame in one swscale pass (AREA) to the same size,
  then centre-crops; nothing is written.
- ``vidgen``: ``ingest_videos`` on a local Ray with N CPUs (clip_len 16, no
  overlap, so every frame but a short tail ends up in a clip), writing Parquet shards.
- ``ray_read_videos``: Ray's built-in ``read_videos`` (decord) with the same
  resize, written to Parquet, when decord is installed.

Throughput is *source frames per second*: the frames in the input set divided by
the wall time, so the ratios are ratios of wall time on the same work.
Prints one JSON line per measurement and a summary line with the ratios.

    .venv/bin/python bench/ingest.py [--data /tmp/vidgen-bench-ingest] [--repeats 2]
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
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidgen_core.config import DataConfig, IngestConfig, SynthConfig  # noqa: E402
from vidgen_core.data.schema import PARQUET_WRITE_OPTIONS  # noqa: E402
from vidgen_core.video.decode import probe, scaled_size  # noqa: E402
from vidgen_core.video.synth import generate_dataset  # noqa: E402

from harness import MIN_REPEATS, LoadWatch, median  # noqa: E402  (bench/harness.py)

SIZE = 128
CLIP_LEN = 16


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


# ---------------------------------------------------------------- bare PyAV ceiling


def _decode_resize(path: str) -> int:
    """Decode every frame and convert it like ingest does (one swscale pass + centre crop)."""
    n = 0
    with av.open(path) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            sw, sh = scaled_size(frame.width, frame.height, SIZE)
            rgb = frame.to_ndarray(width=sw, height=sh, format="rgb24", interpolation="AREA")
            y0, x0 = (sh - SIZE) // 2, (sw - SIZE) // 2
            np.ascontiguousarray(rgb[y0 : y0 + SIZE, x0 : x0 + SIZE])
            n += 1
    return n


def run_pyav(files: list[Path], procs: int) -> tuple[float, int, float]:
    """(wall seconds, frames, CPU seconds of the worker processes)."""
    # Largest first, one file per task: the same balancing ingest does.
    order = sorted((str(p) for p in files), key=lambda p: -os.path.getsize(p))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with mp.get_context("fork").Pool(procs) as pool:
        t0 = time.perf_counter()
        frames = sum(pool.imap_unordered(_decode_resize, order, chunksize=1))
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers are reaped by now
    return wall, frames, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and everything under it (Ray's GCS, raylet, workers)."""
    import psutil  # vendored by Ray, importable once ray is

    total = 0.0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


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
    ap.add_argument("--repeats", type=int, default=MIN_REPEATS, help="alternating pyav/vidgen runs; medians reported")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    root = Path(args.data)
    files = make_data(root, args.hd_files, args.hd_seconds)
    total = sum(probe(str(p)).num_frames for p in files)
    hd = sum(1 for p in files if probe(str(p)).width == 1280)
    print(json.dumps({"data": str(root), "files": len(files), "hd_1280x720": hd, "source_frames": total,
                      "procs": args.procs, "size": SIZE, "clip_len": CLIP_LEN}), flush=True)

    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(address="local", num_cpus=args.procs, include_dashboard=False, log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="vidgen-bench-out-"))
    try:
        # Warm-up outside the clock: Ray workers start and import PyAV/pyarrow once per process.
        warm = work / "warm-src"
        shutil.copytree(root / "small" / "circle", warm / "circle")
        run_vidgen(warm, work / "warm-out")

        times: dict[str, list[float]] = {"pyav": [], "vidgen": []}
        cpus: dict[str, list[float]] = {"pyav": [], "vidgen": []}
        watch = LoadWatch(own_load=args.procs).__enter__()  # each contender keeps `procs` CPUs busy
        for rep in range(args.repeats):  # alternating contenders: drift in other load hits both
            t, n, cpu = run_pyav(files, args.procs)
            assert n == total, (n, total)
            times["pyav"].append(t)
            cpus["pyav"].append(cpu)
            print(json.dumps({"run": "pyav", "repeat": rep, "seconds": round(t, 3), "frames_per_s": round(total / t, 1),
                              "cpu_seconds": round(cpu, 2), **watch.fields()}), flush=True)
            cpu0 = tree_cpu_seconds()
            t, manifest = run_vidgen(root, work / "shards")
            cpu = tree_cpu_seconds() - cpu0
            times["vidgen"].append(t)
            cpus["vidgen"].append(cpu)
            clips = manifest["num_clips"]
            print(json.dumps({"run": "vidgen", "repeat": rep, "seconds": round(t, 3), "frames_per_s": round(total / t, 1),
                              "clips": clips, "clip_frames_per_s": round(clips * CLIP_LEN / t, 1),
                              "errors": manifest["num_files_with_errors"], "cpu_seconds": round(cpu, 2),
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
    summary = {
        "summary": "ingest",
        "pyav_frames_per_s": round(fps["pyav"], 1),
        "vidgen_frames_per_s": round(fps["vidgen"], 1),
        "vidgen_over_pyav": round(fps["vidgen"] / fps["pyav"], 3),
        "goal": 0.9,
        # Frames per CPU second (all processes of each contender, Ray's own included): the
        # same ratio with the other users of a shared machine taken out.
        "vidgen_over_pyav_per_cpu_second": round(cpu_best["pyav"] / cpu_best["vidgen"], 3),
    }
    if "ray_read_videos" in fps:
        summary["ray_read_videos_frames_per_s"] = round(fps["ray_read_videos"], 1)
        summary["vidgen_over_ray_read_videos"] = round(fps["vidgen"] / fps["ray_read_videos"], 3)
    summary.update({"repeats": args.repeats, "statistic": "median", **watch.fields(), "verdict": watch.verdict()})
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
