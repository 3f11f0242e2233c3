"""Drill: an ingest worker process dies while decoding (SIGSEGV, once); the output equals an undisturbed run's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from video_corpus import indexed, write_video

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.datasource import CRASH_ENV
from vidgen_core.data.ingest import ingest_videos

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

CFG = IngestConfig(clip_len=4, size=32, rows_per_shard=8, val_fraction=0.2, test_fraction=0.2)


def _clips(out: Path) -> dict[str, tuple]:
    """``{clip_id: (source, start_frame, split, label, sha256 of the pixels)}`` of a shard set."""
    clips = {}
    for uri in schema.shard_uris(str(out)):
        t = pq.read_table(uri).to_pylist()
        for r in t:
            key = (r["source"], r["start_frame"], r["split"], r["label"], hashlib.sha256(r["frames"]).hexdigest())
            assert r["clip_id"] not in clips, r["clip_id"]  # a retried task must not write its clips twice
            clips[r["clip_id"]] = key
    return clips


def test_a_worker_killed_while_decoding_changes_nothing(ray_cluster, tmp_path, monkeypatch, drill) -> None:
    case = drill(
        "ingest worker killed while decoding", "fault",
        "SIGSEGV of the Ray worker decoding one of 6 videos, on its first attempt",
        "the retried run's clips (ids, pixels, splits, labels) and manifest counts equal an undisturbed run's; "
        "no error row; no leftover claim or temporary file",
    )
    src = tmp_path / "videos"
    for k in range(6):
        (src / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        write_video(src / f"c{k % 2}" / f"v{k}.mp4", indexed(24 + 4 * k, start=100 * k))
    undisturbed = ingest_videos(str(src), str(tmp_path / "undisturbed"), CFG, DataConfig()).manifest
    monkeypatch.setenv(CRASH_ENV, "v3.mp4@once")
    killed = ingest_videos(str(src), str(tmp_path / "killed"), CFG, DataConfig()).manifest

    expected, got = _clips(tmp_path / "undisturbed"), _clips(tmp_path / "killed")
    assert got == expected
    for key in ("num_inputs", "num_clips", "num_files_with_errors", "clips_per_split", "clips_per_label", "fingerprint"):
        assert killed[key] == undisturbed[key], key
    assert killed["num_files_with_errors"] == 0
    assert (undisturbed["worker_deaths"], killed["worker_deaths"]) == (0, 1)  # the fault did happen
    assert not any(".claim" in p.name or ".tmp" in p.name for p in (tmp_path / "killed").rglob("*"))
    same = sum(got.get(k) == v for k, v in expected.items())
    case.figure = f"worker deaths 1, retried; clips equal to the undisturbed run {same}/{len(expected)}; error rows 0; files left over 0"
