"""`vidgen embed` memory: peak RSS summed over all Ray processes at 1x and 10x the videos.

Same method as bench/ingest_memory.py (fresh child process per scale, its own
local Ray on 2 CPUs, RSS of the whole process tree sampled every 50 ms), but
the work is `embed` through Ray Data: decode + cut clips (flat_map) -> VAE
actors (map_batches) -> a streamed Parquet file on the driver. The VAE is a
small untrained one registered in a throwaway SQLite store: memory, not
quality, is measured. Goal: peak at 10x <= 1.2 x peak at 1x.

    .venv/bin/python bench/embed_memory.py [--scale 10]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_memory import BASE, _tree_rss  # noqa: E402

from vidgen_core.video.synth import generate_dataset  # noqa: E402


def _register_vae(work: Path) -> str:
    """A tiny VAE for 8 x 64 x 64 clips in a fresh SQLite store; returns the tracking URI."""
    import torch

    from vidgen_core.config import IngestConfig, TrackingConfig, VAEConfig
    from vidgen_core.models.io import save_model
    from vidgen_core.models.vae import VideoVAE
    from vidgen_core.tracking.mlflow_setup import init_tracking
    from vidgen_core.tracking.registry import register_model

    torch.manual_seed(0)
    cfg = VAEConfig(base_channels=8, channel_mult=[1, 2], latent_channels=4)
    vae = VideoVAE(cfg)
    save_model(vae, "vae", cfg.model_dump(), work / "vae", extra={"clip_len": 8, "size": 64})
    uri, _ = init_tracking(TrackingConfig(experiment="bench"), work / "ws")
    tags = {"ingest_config": IngestConfig(clip_len=8, size=64).model_dump_json()}
    register_model("vae", str(work / "vae"), "vidgen-vae", tags, tracking_uri=uri)
    return uri


def child(copies: int, base: Path) -> None:
    import ray

    from vidgen_core.uses.embed import embed

    work = Path(tempfile.mkdtemp(prefix="vidgen-embed-mem-"))
    try:
        src = work / "src"
        for i in range(copies):
            for p in base.rglob("*.mp4"):
                dst = src / p.parent.name / f"{i:03d}_{p.name}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(p, dst)
        uri = _register_vae(work)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        peak = {"rss": 0}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak["rss"] = max(peak["rss"], _tree_rss(os.getpid())[0])
                time.sleep(0.05)

        idle_rss = _tree_rss(os.getpid())[0]
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        s = embed(str(src), "models:/vidgen-vae/1", str(work / "emb.parquet"), tracking_uri=uri, use_ray=True)
        stop.set()
        thread.join()
        print(json.dumps({
            "copies": copies, "videos": s.videos, "clips": s.clips, "seconds": round(s.seconds, 2),
            "clips_per_s": round(s.clips / s.seconds, 1), "idle_rss_mib": round(idle_rss / 2**20, 1),
            "peak_rss_sum_mib": round(peak["rss"] / 2**20, 1),
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
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    results = []
    for copies in (1, args.scale):
        proc = subprocess.run([sys.executable, __file__, "--child", str(copies), "--data", str(base)],
                              capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            sys.exit(f"child {copies}x failed:\n{proc.stderr[-3000:]}")
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
        print(line, flush=True)
        results.append(json.loads(line))
    small, large = results
    print(json.dumps({
        "summary": "embed_memory", "scale": args.scale, "clips_1x": small["clips"], "clips_10x": large["clips"],
        "peak_rss_sum_1x_mib": small["peak_rss_sum_mib"], "peak_rss_sum_10x_mib": large["peak_rss_sum_mib"],
        "ratio": round(large["peak_rss_sum_mib"] / small["peak_rss_sum_mib"], 3),
        "above_idle_ratio": round(
            (large["peak_rss_sum_mib"] - large["idle_rss_mib"]) / (small["peak_rss_sum_mib"] - small["idle_rss_mib"]), 3
        ),
        "goal": 1.2,
    }), flush=True)


if __name__ == "__main__":
    main()
