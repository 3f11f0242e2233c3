"""Drill: one ingest of 1,000 small video files on real local Ray: every file accounted, every clip once."""

from __future__ import annotations

import time
from collections import Counter

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.ingest import ingest_videos

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

FILES = 1000
FRAMES = 8
CFG = IngestConfig(clip_len=4, size=16, rows_per_shard=512, val_fraction=0.1, test_fraction=0.1)


def _write_small(path, seed: int) -> None:
    """``FRAMES`` frames of 16x16 MPEG-4 (cheap to write and to decode) with a per-file colour."""
    colour = np.random.default_rng(seed).integers(0, 256, 3, dtype=np.uint8)
    with av.open(str(path), "w", format="avi") as c:
        stream = c.add_stream("mpeg4", rate=12)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for t in range(FRAMES):
            frame = np.full((16, 16, 3), colour, np.uint8)
            frame[t % 16] = 255
            c.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(stream.encode(None))


def test_a_thousand_small_files_in_one_ingest(ray_cluster, tmp_path, drill) -> None:
    case = drill("1,000 small files in one ingest", "load",
                 f"{FILES} video files of {FRAMES} frames (16x16) in 4 class folders, one ingest on local Ray",
                 "every file in the ledger with clips, every clip written exactly once, no error row")
    src = tmp_path / "videos"
    for k in range(FILES):
        d = src / f"class{k % 4}"
        d.mkdir(parents=True, exist_ok=True)
        _write_small(d / f"v{k:04d}.avi", k)
    t0 = time.perf_counter()
    manifest = ingest_videos(str(src), str(tmp_path / "shards"), CFG, DataConfig()).manifest
    seconds = time.perf_counter() - t0

    clips_per_file: Counter[str] = Counter()
    ids: list[str] = []
    for uri in schema.shard_uris(str(tmp_path / "shards")):
        table = pq.read_table(uri, columns=["source", "clip_id"])
        clips_per_file.update(table.column("source").to_pylist())
        ids.extend(table.column("clip_id").to_pylist())
    expected = (FRAMES - CFG.clip_len) // CFG.stride + 1
    assert manifest["num_inputs"] == FILES and manifest["num_files_with_errors"] == 0
    assert len(clips_per_file) == FILES
    assert len(ids) == len(set(ids)) == manifest["num_clips"]
    assert set(clips_per_file.values()) == {expected}
    case.figure = (f"files accounted {len(clips_per_file)}/{FILES}; clips {len(ids)}, duplicates 0; "
                   f"{seconds:.0f} s ({FILES / seconds:.0f} files/s on 2 CPUs)")
