"""Ingest of broken and odd files on real local Ray: full accounting, exact pixels, incremental re-runs."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from video_corpus import indexed, make_corpus, truncate_within_packet, write_video

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.ingest import ingest_videos
from vidgen_core.data.plan import plan_clips
from vidgen_core.data.readers import frames_to_numpy, load_clips
from vidgen_core.video.decode import probe, to_rgb

pytestmark = pytest.mark.integration

CFG = IngestConfig(clip_len=4, size=32, rows_per_shard=8, val_fraction=0.2, test_fraction=0.2)
DATA = DataConfig()


def _rows(out: Path, columns: list[str]) -> dict[str, list]:
    rows: dict[str, list] = {c: [] for c in columns}
    for uri in schema.shard_uris(str(out)):
        table = pq.read_table(uri, columns=columns)
        for c in columns:
            rows[c].extend(table.column(c).to_pylist())
    return rows


def _errors_by_rel(src: Path, out: Path) -> dict[str, dict]:
    return {Path(e["source"]).relative_to(src).as_posix(): e for e in schema.read_errors(str(out)).to_pylist()}


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


@pytest.fixture(scope="module")
def corpus(ray_cluster, tmp_path_factory) -> dict:
    src = tmp_path_factory.mktemp("corpus") / "videos"
    expect = make_corpus(src)
    out = tmp_path_factory.mktemp("corpus-out") / "shards"
    result = ingest_videos(str(src), str(out), CFG, DATA)
    return {"src": src, "out": out, "expect": expect, "result": result}


def test_every_file_is_accounted_with_a_specific_reason(corpus: dict) -> None:
    src, out, expect, manifest = corpus["src"], corpus["out"], corpus["expect"], corpus["result"].manifest
    errors = _errors_by_rel(src, out)
    rows = _rows(out, ["source", "clip_id"])
    clips_of = Counter(Path(s).relative_to(src).as_posix() for s in rows["source"])
    for rel, e in expect.items():
        assert (clips_of[rel] > 0) == e["clips"], rel
        if e["stage"] is None:
            assert rel not in errors, errors.get(rel)
            info = probe(str(src / rel))
            assert clips_of[rel] == len(plan_clips(info.num_frames, CFG, info.fps)), rel
        else:
            err = errors[rel]
            assert (err["stage"], err["error_type"]) == (e["stage"], e["error_type"]), err
            assert rel.split("/")[-1] in err["message"]
            assert err["num_clips"] == clips_of[rel]
    assert set(errors) == {rel for rel, e in expect.items() if e["stage"]}
    assert manifest["num_inputs"] == len(expect)
    assert manifest["num_files_with_clips"] == sum(e["clips"] for e in expect.values())
    assert manifest["num_files_with_errors"] == sum(1 for e in expect.values() if e["stage"])
    assert manifest["num_clips"] == len(rows["clip_id"]) == len(set(rows["clip_id"]))
    assert sum(manifest["clips_per_split"].values()) == manifest["num_clips"]
    assert manifest["label_names"] == ["bad", "good", "odd"]
    assert sum(manifest["clips_per_label"].values()) == manifest["num_clips"]
    assert manifest["clips_per_label"]["0"] == clips_of["bad/cut.mp4"]
    assert not (out / schema.ERRORS_SPOOL).exists()


@pytest.mark.parametrize(
    "rel", ["good/long.mp4", "odd/vp9.webm", "odd/mpeg4.avi", "odd/oddsize.mp4", "odd/vfr.mkv", "bad/cut.mp4"]
)
def test_clip_pixels_equal_a_reference_decode(corpus: dict, rel: str) -> None:
    src, out = corpus["src"], corpus["out"]
    with av.open(str(src / rel)) as c:
        ref = []
        try:
            for f in c.decode(video=0):
                ref.append(to_rgb(f, CFG.size))
        except av.error.FFmpegError:
            assert rel == "bad/cut.mp4"
    shape = (CFG.clip_len, CFG.size, CFG.size, 3)
    checked = 0
    for uri in schema.shard_uris(str(out)):
        table = pq.read_table(uri, filters=[("source", "=", str(src / rel))])
        frames = frames_to_numpy(table.column("frames"), shape)
        for start, clip in zip(table.column("start_frame").to_pylist(), frames):
            np.testing.assert_array_equal(clip, np.stack(ref[start : start + CFG.clip_len]))
            checked += 1
    assert checked >= 2


def test_rerun_is_a_noop(corpus: dict) -> None:
    out = corpus["out"]
    before = _mtimes(out)
    again = ingest_videos(str(corpus["src"]), str(out), CFG, DATA)
    assert again.up_to_date and again.files == 0
    assert again.manifest == corpus["result"].manifest
    assert _mtimes(out) == before


def test_incremental_runs(ray_cluster, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "a").mkdir(parents=True)
    write_video(src / "a" / "one.mp4", indexed(16), fps=12)
    write_video(src / "a" / "two.mp4", indexed(16, start=50), fps=12)
    (src / "a" / "zero.mp4").write_bytes(b"")
    write_video(src / "a" / "cut-src.mp4", indexed(60), fps=12)
    truncate_within_packet(src / "a" / "cut-src.mp4", src / "a" / "cut.mp4", 0.6)
    (src / "a" / "cut-src.mp4").unlink()
    first = ingest_videos(str(src), str(out), CFG, DATA)
    assert first.files == 4 and first.manifest["num_files_with_errors"] == 2
    old_shards = set(first.manifest["shards"])
    old_mtimes = {n: (out / n).stat().st_mtime_ns for n in old_shards}

    # A run cut short leaves files the manifest does not name: they are never read, and go next time.
    (out / "part-stray-000000-x.parquet").write_bytes(b"half")
    (out / f"{schema.LEDGER_PREFIX}stray.parquet").write_bytes(b"half")
    assert load_clips(str(out), "train")[0].shape[0] == first.manifest["clips_per_split"]["train"]

    # Added files (a new class too) are read alone; earlier shards stay untouched.
    (src / "b").mkdir()
    write_video(src / "b" / "three.mp4", indexed(12, start=200), fps=12)
    added = ingest_videos(str(src), str(out), CFG, DATA)
    assert added.files == 1 and added.clips == 3
    assert old_shards < set(added.manifest["shards"])
    assert {n: (out / n).stat().st_mtime_ns for n in old_shards} == old_mtimes
    assert added.manifest["label_names"] == ["a", "b"]
    assert added.manifest["num_clips"] == first.manifest["num_clips"] + 3
    assert not (out / "part-stray-000000-x.parquet").exists()
    assert not (out / f"{schema.LEDGER_PREFIX}stray.parquet").exists()

    # --retry-failed reads only the error list; the damaged file's clips are not duplicated.
    retried = ingest_videos(str(src), str(out), CFG, DATA, retry_failed=True)
    assert retried.files == 2
    assert retried.manifest["num_clips"] == added.manifest["num_clips"]
    ids = _rows(out, ["clip_id"])["clip_id"]
    assert len(ids) == len(set(ids)) == retried.manifest["num_clips"]

    # A fixed file (new size and mtime) is read again on a plain run; a removed one loses its clips.
    write_video(src / "a" / "zero.mp4", indexed(8, start=300), fps=12)
    (src / "a" / "one.mp4").unlink()
    fixed = ingest_videos(str(src), str(out), CFG, DATA)
    assert fixed.files == 1
    errors = _errors_by_rel(src, out)
    assert set(errors) == {"a/cut.mp4"}
    m = fixed.manifest
    assert m["num_inputs"] == 4 and m["num_clips"] == retried.manifest["num_clips"] + 2 - 4
    sources = set(_rows(out, ["source"])["source"])
    assert str(src / "a" / "one.mp4") not in sources and str(src / "a" / "zero.mp4") in sources
    total = sum(load_clips(str(out), s)[0].shape[0] for s in ("train", "val", "test"))
    assert total == m["num_clips"]
    assert sorted(p.name for p in out.glob("part-*")) == sorted(m["shards"])
    assert ingest_videos(str(src), str(out), CFG, DATA).up_to_date


def test_labels_file(ray_cluster, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "x").mkdir(parents=True)
    for name in ("p.mp4", "q.mp4", "r.mp4"):
        write_video(src / "x" / name, indexed(8), fps=12)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nx/p.mp4,7\nx/q.mp4,2\n")
    m = ingest_videos(str(src), str(out), CFG, DataConfig(labels_file=str(labels))).manifest
    assert m["label_names"] == ["2", "7"]
    rows = _rows(out, ["source", "label", "label_name"])
    got = {Path(s).name: (lab, name) for s, lab, name in zip(rows["source"], rows["label"], rows["label_name"])}
    assert got == {"p.mp4": (1, "7"), "q.mp4": (0, "2"), "r.mp4": (-1, "")}
    # New labels mean new shards, not a mix of old and new labels.
    labels.write_text("path,label\nx/p.mp4,7\nx/q.mp4,7\n")
    again = ingest_videos(str(src), str(out), CFG, DataConfig(labels_file=str(labels)))
    assert not again.up_to_date and again.files == 3 and again.manifest["label_names"] == ["7"]
    shutil.rmtree(out)
