"""A shard folder is plain Parquet: common readers, default options, clips only.

Each reader is pointed at the folder itself (not at a file list) and must see
exactly the clip rows with one schema: the manifest, errors and ledger carry a
leading ``_`` that Parquet readers skip. ``frames`` is decoded with nothing but
the Parquet schema metadata, as a user without vidgen would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.ingest import run_ingest
from vidgen_core.data.readers import load_clips

pytestmark = pytest.mark.integration

INGEST = IngestConfig(clip_len=4, size=16, rows_per_shard=8, val_fraction=0.25, test_fraction=0.25)


@pytest.fixture(scope="module")
def shards(ray_cluster, synth_videos: Path, tmp_path_factory) -> tuple[Path, dict]:
    src = tmp_path_factory.mktemp("readers-src") / "videos"
    shutil.copytree(synth_videos, src)
    (src / "circle" / "broken.mp4").write_bytes(b"not a video")  # so _errors.parquet has a row
    out = tmp_path_factory.mktemp("readers-out") / "shards"
    manifest = run_ingest(str(src), str(out), INGEST, DataConfig())
    return out, manifest


def _decode(frames: list[bytes], schema_metadata: dict[bytes, bytes]) -> np.ndarray:
    """What a user without vidgen writes: the layout comes from the schema metadata only."""
    layout = json.loads(schema_metadata[b"vidgen.frames"])
    return np.frombuffer(b"".join(frames), dtype=layout["dtype"]).reshape(-1, *layout["shape"])


def _reference(out: Path, manifest: dict) -> np.ndarray:
    parts = [load_clips(str(out), split)[0] for split in ("train", "val", "test")]
    return np.concatenate([p for p in parts if len(p)])


def test_the_folder_holds_clip_shards_and_underscored_bookkeeping(shards) -> None:
    out, manifest = shards
    names = {p.name for p in out.iterdir()}
    assert {schema.MANIFEST_NAME, schema.ERRORS_NAME, manifest["ledger"]} <= names
    assert all(n.startswith("_") or schema.is_shard_name(n) for n in names), names
    assert manifest["num_files_with_errors"] == 1


def test_pyarrow_dataset_reads_clips_only(shards) -> None:
    import pyarrow.dataset as ds

    out, manifest = shards
    table = ds.dataset(out, format="parquet").to_table()
    assert table.num_rows == manifest["num_clips"]
    assert table.schema.names == list(schema.CLIP_COLUMNS)
    clips = _decode(table.column("frames").to_pylist(), table.schema.metadata)
    assert clips.shape == (manifest["num_clips"], *manifest["clip_shape"]) and clips.dtype == np.uint8
    assert sorted(map(bytes, clips.reshape(len(clips), -1))) == sorted(map(bytes, _reference(out, manifest).reshape(len(clips), -1)))


def test_pyarrow_parquet_read_table_reads_clips_only(shards) -> None:
    import pyarrow.parquet as pq

    out, manifest = shards
    table = pq.read_table(out)
    assert table.num_rows == manifest["num_clips"]
    clips = _decode(table.column("frames").to_pylist(), table.schema.metadata)
    assert clips.shape[1:] == tuple(manifest["clip_shape"])
    assert schema.frame_layout(table.schema) == (tuple(manifest["clip_shape"]), "uint8")


def test_pandas_reads_clips_only(shards) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    out, manifest = shards
    df = pd.read_parquet(out)
    assert len(df) == manifest["num_clips"]
    assert set(df["split"]) <= {"train", "val", "test"} and df["clip_id"].is_unique
    # A DataFrame keeps no Parquet metadata: the layout comes from any shard's schema.
    first = sorted(out.glob("part-*.parquet"))[0]
    clips = _decode(list(df["frames"]), pq.read_schema(first).metadata)
    assert clips.shape == (len(df), *manifest["clip_shape"])


def test_ray_data_reads_clips_only(shards) -> None:
    import ray.data

    out, manifest = shards
    ds = ray.data.read_parquet(str(out))
    assert ds.count() == manifest["num_clips"]
    rows = ds.select_columns(["frames"]).take_all()
    metadata = ds.schema().base_schema.metadata
    clips = _decode([r["frames"] for r in rows], metadata)
    assert clips.shape == (manifest["num_clips"], *manifest["clip_shape"])


def test_clips_across_videos_takes_each_video_s_first_clip_before_any_second(shards) -> None:
    import pyarrow.dataset as ds

    from vidgen_core.data.readers import clips_across_videos

    out, manifest = shards
    rows = ds.dataset(str(out), format="parquet").to_table(columns=["video_id", "split", "frames"]).to_pylist()
    split = max(("train", "val", "test"), key=lambda s: len({r["video_id"] for r in rows if r["split"] == s}))
    in_split = [r for r in rows if r["split"] == split]
    videos = list(dict.fromkeys(r["video_id"] for r in in_split))
    assert len(videos) >= 2 and len(in_split) > len(videos)  # several videos, some with more than one clip
    frames, labels = clips_across_videos(str(out), split, len(videos) + 1)
    assert frames.shape == (len(videos) + 1, *manifest["clip_shape"]) and labels.shape == (len(videos) + 1,)
    decoded = _decode([r["frames"] for r in in_split], ds.dataset(str(out), format="parquet").schema.metadata)
    owner = [next(r["video_id"] for r, d in zip(in_split, decoded) if np.array_equal(d, f)) for f in frames]
    assert set(owner[: len(videos)]) == set(videos)  # one clip of every video first...
    assert owner[len(videos)] in videos  # ...then a second clip of one of them
    reference, _ = load_clips(str(out), split)
    assert all(any(np.array_equal(f, r) for r in reference) for f in frames)  # real clips of the split
