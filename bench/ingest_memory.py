"""Ingest memory: peak RSS summed over all Ray processes at 1x and 10x the data.

Each scale runs in a fresh child process with its own local Ray (2 CPUs), so
no worker carries memory over from the other. The child ingests N copies of a
small generated data set (hard links, so 10x is ten times the files and the
frames) while a thread samples, every 50 ms, the RSS of the driver and every
process under it (raylet, GCS, Ray Data workers, ...) and keeps the largest
sum. It also reports the sum of each process's own peak (VmHWM) at the end.
Goal: peak at 10x <= 1.2 x peak at 1x.

    .venv/bin/python bench/ingest_memory.py [--scale 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidgen_core.config import DataConfig, IngestConfig, SynthConfig  # noqa: E402
from vidgen_core.video.synth import generate_dataset  # noqa: E402

BASE = SynthConfig(
    classes=["circle", "square", "triangle"], videos_per_class=8, width=128, height=96,
    fps_choices=[24.0, 30.0], min_duration_s=2.0, max_duration_s=4.0, seed=21,
)
CFG = IngestConfig(clip_len=8, size=64, rows_per_shard=64)


def _tree_rss(root_pid: int) -> tuple[int, int, int]:
    """(sum of RSS, sum of VmHWM, process count) of ``root_pid`` and all its descendants."""
    import psutil  # vendored by Ray (ray/thirdparty_files), importable once ray is

    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, 0
    rss = hwm = n = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            with open(f"/proc/{p.pid}/status") as f:
                hwm += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
            n += 1
        except (psutil.NoSuchProcess, OSError, StopIteration):
            pass
    return rss, hwm, n


def child(copies: int, base: Path) -> None:
    import ray

    from vidgen_core.data.ingest import ingest_videos

    work = Path(tempfile.mkdtemp(prefix="vidgen-mem-"))
    try:
        src = work / "src"
        for i in range(copies):
            for p in base.rglob("*.mp4"):
                dst = src / p.parent.name / f"{i:03d}_{p.name}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(p, dst)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        peak = {"rss": 0, "procs": 0}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss, _, n = _tree_rss(os.getpid())
                if rss > peak["rss"]:
                    peak.update(rss=rss, procs=n)
                time.sleep(0.05)

        idle_rss = _tree_rss(os.getpid())[0]
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t0 = time.perf_counter()
        result = ingest_videos(str(src), str(work / "out"), CFG, DataConfig())
        seconds = time.perf_counter() - t0
        stop.set()
        thread.join()
        _, hwm, n = _tree_rss(os.getpid())
        m = result.manifest
        print(json.dumps({
            "copies": copies, "files": m["num_inputs"], "clips": m["num_clips"],
            "clip_mib": round(m["num_clips"] * CFG.clip_len * CFG.size**2 * 3 / 2**20, 1),
            "seconds": round(seconds, 2), "idle_rss_mib": round(idle_rss / 2**20, 1),
            "peak_rss_sum_mib": round(peak["rss"] / 2**20, 1), "procs_at_peak": peak["procs"],
            "hwm_sum_mib": round(hwm / 2**20, 1), "procs_at_end": n,
        }), flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "vidgen-bench-memory"))
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    base = Path(args.data)
    if args.child is not None:
        child(args.child, base)
        return
    generate_dataset(BASE, base)
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    results = []
    for copies in (1, args.scale):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(copies), "--data", str(base)],
            capture_output=True, text=True, env=env, timeout=900,
        )
        if proc.returncode != 0:
            sys.exit(f"child {copies}x failed:\n{proc.stderr[-3000:]}")
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
        print(line, flush=True)
        results.append(json.loads(line))
    small, large = results
    print(json.dumps({
        "summary": "ingest_memory", "scale": args.scale,
        "peak_rss_sum_1x_mib": small["peak_rss_sum_mib"], "peak_rss_sum_10x_mib": large["peak_rss_sum_mib"],
        "ratio": round(large["peak_rss_sum_mib"] / small["peak_rss_sum_mib"], 3),
        "hwm_ratio": round(large["hwm_sum_mib"] / small["hwm_sum_mib"], 3),
        # Ray's own processes before any ingest (~0.9 GiB here) weigh in both; this leaves them out.
        "above_idle_ratio": round(
            (large["peak_rss_sum_mib"] - large["idle_rss_mib"]) / (small["peak_rss_sum_mib"] - small["idle_rss_mib"]), 3
        ),
        "goal": 1.2,
    }), flush=True)


if __name__ == "__main__":
    main()
