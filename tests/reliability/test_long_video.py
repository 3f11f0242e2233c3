"""Drill: a two-hour-equivalent video (86,400 frames, 24x24) through one ingest read task, with bounded memory.

The read task runs in a fresh process per video (as a Ray worker would), and
its peak resident memory is compared with that of a 10-minute video: the
two-hour one has ~130 MB more pixels, and none of that may pile up. Marked
``slow`` (about a minute on 2 cores): `make drills` runs it, `make test` does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

FPS, SIDE = 12, 24
CHILD = r"""
import json, resource, sys
from vidgen_core.config import IngestConfig
from vidgen_core.data.datasource import read_files
src, out, spool = sys.argv[1:4]
cfg = IngestConfig(clip_len=4, size=24, rows_per_shard=4096)
row = {"source": src, "video_id": "v", "split": "train", "label": 0, "label_name": "a", "size": 0}
[table] = list(read_files([row], cfg.model_dump(mode="json"), spool, out, "drill", 0))
print(json.dumps({"rows": sum(table.column("rows").to_pylist()), "shards": table.num_rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _write(path: Path, frames: int) -> None:
    """MPEG-4, 24x24, a bar moving over a fixed colour: cheap to encode and decode."""
    base = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="avi") as c:
        stream = c.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            frame = base.copy()
            frame[t % SIDE] = 255
            c.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(stream.encode(None))


def _ingest_in_child(src: Path, out: Path) -> dict:
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), str(out / "_spool")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_two_hour_video_is_ingested_in_bounded_memory(tmp_path, drill) -> None:
    case = drill("two-hour video, bounded memory", "load",
                 f"one video of 2 h at {FPS} fps ({2 * 3600 * FPS} frames, {SIDE}x{SIDE}) through an ingest read task",
                 "every clip written; the task's peak memory no higher than for a 10-minute video (within 15 % "
                 "of the extra clips' bytes)")
    long_frames, short_frames = 2 * 3600 * FPS, 600 * FPS
    _write(tmp_path / "long.avi", long_frames)
    _write(tmp_path / "short.avi", short_frames)
    t0 = time.perf_counter()
    long = _ingest_in_child(tmp_path / "long.avi", tmp_path / "long")
    seconds = time.perf_counter() - t0
    short = _ingest_in_child(tmp_path / "short.avi", tmp_path / "short")

    clip_bytes = 4 * 24 * 24 * 3
    assert long["rows"] == long_frames // 4 and short["rows"] == short_frames // 4
    written = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "long").glob("part-*.parquet"))
    assert written == long["rows"]
    pixels_mb = long["rows"] * clip_bytes / 2**20
    extra_mb = (long["rows"] - short["rows"]) * clip_bytes / 2**20
    growth = long["peak_rss_mb"] - short["peak_rss_mb"]
    assert growth < 0.15 * extra_mb, (long, short, extra_mb)
    case.figure = (f"clips {long['rows']}/{long_frames // 4} in {long['shards']} shards ({pixels_mb:.0f} MB of pixels, "
                   f"{seconds:.0f} s); peak RSS {long['peak_rss_mb']:.0f} MB vs {short['peak_rss_mb']:.0f} MB for 10 min")
