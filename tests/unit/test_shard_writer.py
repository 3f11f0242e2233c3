"""An ingest read task's own shard writing: exact pixels while the block buffer is reused, shard sizes, retries."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
from video_corpus import indexed, write_video

import vidgen_core.data.datasource as datasource
from vidgen_core.config import IngestConfig
from vidgen_core.data.readers import frames_to_numpy
from vidgen_core.video.decode import to_rgb

CFG = IngestConfig(clip_len=4, size=32, rows_per_shard=7)
SHAPE = (4, 32, 32, 3)


def _read_task(src: Path, out: Path) -> list[dict]:
    row = {"source": str(src), "video_id": "v", "split": "train", "label": 0, "label_name": "a", "size": 0}
    [table] = list(datasource.read_files([row], CFG.model_dump(mode="json"), str(out / "_spool"), str(out), "b", 3))
    return table.to_pylist()


def test_pixels_are_exact_across_reused_blocks_and_shard_boundaries(tmp_path: Path, monkeypatch) -> None:
    # Blocks of 3 clips: the task's pixel buffer is refilled 5 times, and shards of 7 rows cut blocks in two.
    monkeypatch.setattr(datasource, "BLOCK_BYTES", 3 * int(np.prod(SHAPE)))
    src = tmp_path / "v.mp4"
    write_video(src, indexed(60))
    out = tmp_path / "out"
    out.mkdir()
    written = _read_task(src, out)
    assert [w["rows"] for w in written] == [7, 7, 1]
    assert sorted(p.name for p in out.glob("part-*")) == [w["shard"] for w in written]
    assert [w["shard"] for w in written][0] == "part-b-000003-0000.parquet"
    with av.open(str(src)) as c:
        ref = [to_rgb(f, 32) for f in c.decode(video=0)]
    checked = 0
    for w in written:
        table = pq.read_table(out / w["shard"])
        for start, clip in zip(table.column("start_frame").to_pylist(), frames_to_numpy(table.column("frames"), SHAPE)):
            np.testing.assert_array_equal(clip, np.stack(ref[start : start + 4]))
            checked += 1
    assert checked == 15


def test_a_retried_task_removes_what_its_earlier_attempt_wrote(tmp_path: Path) -> None:
    src = tmp_path / "v.mp4"
    write_video(src, indexed(60))
    out = tmp_path / "out"
    out.mkdir()
    _read_task(src, out)
    # An earlier attempt that got further (e.g. with clips of a file this attempt skips), and a half-written file.
    (out / "part-b-000003-0007.parquet").write_bytes(b"stale")
    (out / "part-b-000003-0008.parquet.tmp").write_bytes(b"half")
    (out / "part-b-000004-0000.parquet").write_bytes(b"another task's")
    written = _read_task(src, out)  # the task's attempt marker is in the spool: this is a retry
    assert sorted(p.name for p in out.glob("part-b-000003-*")) == [w["shard"] for w in written]
    assert (out / "part-b-000004-0000.parquet").exists()


def test_shards_keep_statistics_for_every_column_but_the_pixels(tmp_path: Path) -> None:
    # A clip's min/max is far over Parquet's 4 KiB limit, so it was never stored, only computed.
    src = tmp_path / "v.mp4"
    write_video(src, indexed(20))
    out = tmp_path / "out"
    out.mkdir()
    [first, *_] = _read_task(src, out)
    meta = pq.ParquetFile(out / first["shard"]).metadata
    names = meta.schema.to_arrow_schema().names
    group = meta.row_group(0)
    with_stats = {name for i, name in enumerate(names) if group.column(i).is_stats_set}
    assert with_stats == set(names) - {"frames"}
    assert group.column(names.index("split")).statistics.has_min_max
