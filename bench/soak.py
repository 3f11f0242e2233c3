"""Soak: ingest and metric logging over and over, with faults, checking that nothing is lost or leaks.

The drills in tests/reliability inject each fault once. A soak repeats them for a
while on one long-lived Ray and one ``mlflow server``, the way a cluster that
ingests all day lives, and watches what a single drill cannot see: slow leaks
(driver memory, open files, Ray worker processes, leftover spool or temporary
files) and results that drift from round to round.

Each round:

1. **Ingest** the same generated videos into a fresh folder. Every other round
   the Ray worker decoding one chosen video is killed (SIGSEGV, its first attempt
   only: ``VIDGEN_TESTING_CRASH_DECODER=<name>@once``). Checked: the clip ids and
   the manifest counts equal round 0's (undisturbed), no error row, the kill counted
   in ``worker_deaths``, no ``.tmp`` or spool file left.
2. **Log metrics** with :class:`ResilientMetricLogger` (as training does) into a new
   run on the server. Every third round the server is stopped mid-way for
   ``--outage-s`` seconds, then started again on the same store and port. Checked:
   every point arrived, exactly once.
3. **Measure** the driver's RSS, its open file descriptors, the number of live Ray
   worker processes and the work folder's file count.

One JSON line per round, then a summary: rounds passed, the growth of each gauge
between the first and the last third of the rounds, the others' CPU
(bench/harness.py) and a verdict.

    .venv/bin/python bench/soak.py [--minutes 10] [--rounds N] [--outage-s 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq  # noqa: E402

from vidgen_core import storage  # noqa: E402
from vidgen_core.config import DataConfig, IngestConfig, SynthConfig  # noqa: E402
from vidgen_core.data import schema  # noqa: E402
from vidgen_core.data.datasource import CRASH_ENV  # noqa: E402
from vidgen_core.video.synth import generate_dataset  # noqa: E402

from harness import LoadWatch, median  # noqa: E402  (bench/harness.py)

POINTS_PER_ROUND = 60  # metric points logged per round (20 steps x 3 metrics)
# A gauge may grow this much from the first third of the rounds to the last before it counts as a leak.
LEAK_TOLERANCE = {"driver_rss_mib": 0.15, "open_fds": 0.10, "ray_workers": 0.5, "work_files": 0.0}


class Server:
    """``mlflow server`` on 127.0.0.1 (SQLite store): stopped and started again on the same store and port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        cmd = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--artifacts-destination", str(self.root / "artifacts")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited; see {self.root / 'server.log'}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server not healthy after {timeout_s:.0f} s; see {self.root / 'server.log'}")

    def stop(self) -> None:
        """SIGTERM the server's session, SIGKILL what is left after 20 s."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        self.proc = None


def gauges(work: Path) -> dict[str, float]:
    """Driver RSS (MiB), its open fds, live Ray worker processes, files under the work folder."""
    import psutil  # vendored by Ray, importable once ray is

    me = psutil.Process()
    workers = 0
    for p in me.children(recursive=True):
        try:
            workers += p.name().startswith("ray::") or "default_worker.py" in " ".join(p.cmdline())
        except psutil.Error:
            continue
    return {"driver_rss_mib": me.memory_info().rss / 2**20, "open_fds": me.num_fds(), "ray_workers": workers,
            "work_files": sum(1 for p in work.rglob("*") if p.is_file())}


def ingest_round(src: Path, out: Path, crash: str | None) -> dict[str, Any]:
    """One ingest into a fresh ``out``; with ``crash``, the worker decoding that file dies once."""
    from vidgen_core.data.ingest import ingest_videos

    shutil.rmtree(out, ignore_errors=True)
    if crash:
        os.environ[CRASH_ENV] = f"{crash}@once"
    try:
        t0 = time.perf_counter()
        result = ingest_videos(str(src), str(out), IngestConfig(clip_len=8, size=32, rows_per_shard=16), DataConfig())
        seconds = time.perf_counter() - t0
    finally:
        os.environ.pop(CRASH_ENV, None)
    ids: list[str] = []
    for uri in schema.shard_uris(str(out)):
        fs, path = storage.resolve(uri)
        ids += pq.read_table(path, filesystem=fs, columns=[schema.COL_CLIP_ID]).column(0).to_pylist()
    ids.sort()
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and (".tmp" in p.name or schema.ERRORS_SPOOL in str(p))]
    return {"seconds": seconds, "clip_ids": ids, "manifest": result.manifest, "leftovers": leftovers}


def metrics_round(server: Server, rnd: int, outage_s: float) -> dict[str, Any]:
    """Log POINTS_PER_ROUND points into a new run; with ``outage_s``, the server is down for it mid-way."""
    from mlflow import MlflowClient

    from vidgen_core.tracking.resilient_logger import ResilientMetricLogger

    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name("soak") or client.get_experiment(client.create_experiment("soak"))
    run_id = client.create_run(exp.experiment_id, run_name=f"round-{rnd}").info.run_id
    logger = ResilientMetricLogger(client, run_id, min_backoff_s=0.2, max_backoff_s=2.0, send_timeout_s=3.0)
    steps = POINTS_PER_ROUND // 3
    down_at = steps // 3 if outage_s else -1
    up_at = 2 * steps // 3
    t_down = 0.0
    for step in range(steps):
        if step == down_at:
            server.stop()
            t_down = time.monotonic()
        if step == up_at and outage_s:
            time.sleep(max(0.0, outage_s - (time.monotonic() - t_down)))
            server.start()
        logger.log({"loss": 1.0 / (step + 1), "lr": 1e-3, "round": float(rnd)}, step)
        time.sleep(0.05)
    undelivered = logger.close(timeout_s=120)
    arrived = sum(len(client.get_metric_history(run_id, k)) for k in ("loss", "lr", "round"))
    client.set_terminated(run_id)
    return {"arrived": arrived, "undelivered": undelivered, "outage_s": round(outage_s, 1)}


def growth(values: list[float]) -> float:
    """Relative growth of the median of the last third over the median of the first third (0 if too few)."""
    k = len(values) // 3
    if k == 0:
        return 0.0
    first, last = median(values[:k]), median(values[-k:])
    return (last - first) / max(first, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="stop starting rounds after this long")
    ap.add_argument("--rounds", type=int, default=0, help="run exactly this many rounds instead (>= 3)")
    ap.add_argument("--outage-s", type=float, default=8.0, help="how long the tracking server stays down")
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="vidgen-soak-"))
    src = work / "videos"
    synth = SynthConfig(classes=["circle", "square"], videos_per_class=4, width=64, height=48,
                        fps_choices=[12.0], min_duration_s=2.0, max_duration_s=3.0, seed=5)
    videos = generate_dataset(synth, src)
    victim = Path(str(videos[0].path)).name
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    server = Server(work / "mlflow")
    (work / "mlflow").mkdir()
    server.start()
    rows: list[dict[str, Any]] = []
    baseline: list[str] | None = None
    gauge_rows: list[dict[str, float]] = []
    deadline = time.monotonic() + args.minutes * 60
    watch = LoadWatch(own_load=args.cpus).__enter__()
    try:
        rnd = 0
        while (rnd < args.rounds) if args.rounds else (time.monotonic() < deadline or rnd < 3):
            crash = victim if rnd % 2 == 1 else None
            ing = ingest_round(src, work / "shards", crash)
            if baseline is None:
                baseline = ing["clip_ids"]
            m = ing["manifest"]
            met = metrics_round(server, rnd, args.outage_s if rnd % 3 == 2 else 0.0)
            g = gauges(work)
            gauge_rows.append(g)
            checks = {
                "clips_equal_round_0": ing["clip_ids"] == baseline,
                "no_error_rows": m["num_files_with_errors"] == 0,
                "kill_counted": m["worker_deaths"] == (1 if crash else 0),
                "no_leftovers": not ing["leftovers"],
                "metrics_all_arrived_once": met["arrived"] == POINTS_PER_ROUND and met["undelivered"] == 0,
            }
            row = {"round": rnd, "worker_killed": bool(crash), "outage_s": met["outage_s"], "clips": len(ing["clip_ids"]),
                   "ingest_s": round(ing["seconds"], 2), "metrics_arrived": met["arrived"],
                   **{k: round(v, 1) for k, v in g.items()}, "failed": [k for k, ok in checks.items() if not ok],
                   **watch.fields()}
            rows.append(row)
            print(json.dumps(row), flush=True)
            rnd += 1
    finally:
        server.stop()
        ray.shutdown()
        watch.__exit__()
    growths = {k: round(growth([g[k] for g in gauge_rows]), 3) for k in LEAK_TOLERANCE}
    leaks = [k for k, v in growths.items() if v > LEAK_TOLERANCE[k]]
    failed_rounds = [r["round"] for r in rows if r["failed"]]
    summary = {
        "summary": "soak", "rounds": len(rows), "rounds_passed": len(rows) - len(failed_rounds),
        "failed_rounds": failed_rounds, "worker_kills": sum(r["worker_killed"] for r in rows),
        "outages": sum(r["outage_s"] > 0 for r in rows),
        "metrics_arrived": f"{sum(r['metrics_arrived'] for r in rows)}/{POINTS_PER_ROUND * len(rows)}",
        "growth_first_to_last_third": growths, "leaks": leaks,
        "result": "pass" if not failed_rounds and not leaks else "fail",
        **watch.fields(), "verdict": watch.verdict(),
    }
    print(json.dumps(summary), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if summary["result"] == "pass" else 1)


if __name__ == "__main__":
    main()
