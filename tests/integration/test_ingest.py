"""Ingest on a real local Ray cluster: clips, errors, manifest, readers, reuse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.ingest import run_ingest
from vidgen_core.data.plan import assign_split, plan_clips
from vidgen_core.data.readers import frames_to_numpy, iter_shard_clips, load_clips, read_split, read_split_in_memory
from vidgen_core.errors import UserError
from vidgen_core.video.decode import VideoDecodeError, iter_frames, probe
from vidgen_core.video.encode import write_mp4

pytestmark = pytest.mark.integration

INGEST = IngestConfig(clip_len=8, size=16, rows_per_shard=8, val_fraction=0.25, test_fraction=0.25)
DATA = DataConfig()


def _truncate(src: Path, dst: Path, keep_fraction: float) -> None:
    """Copy ``src`` cut in the middle of the video packet at ``keep_fraction`` of its frames."""
    with av.open(str(src)) as c:
        packets = [p for p in c.demux(video=0) if p.size > 0]
        pkt = packets[int(len(packets) * keep_fraction)]
    dst.write_bytes(src.read_bytes()[: pkt.pos + pkt.size // 2])


def _decodable_frames(path: Path) -> int:
    n = 0
    try:
        for _ in iter_frames(str(path), INGEST.size):
            n += 1
    except VideoDecodeError:
        pass
    return n


@pytest.fixture(scope="module")
def ingested(ray_cluster, synth_videos: Path, tmp_path_factory) -> dict:
    src = tmp_path_factory.mktemp("ingest-src") / "videos"
    shutil.copytree(synth_videos, src)
    good = sorted(src.rglob("*.mp4"))
    shutil.copy(good[0], src / "loose.mp4")  # in the root: unlabelled
    (src / "zero.mp4").write_bytes(b"")
    (src / "circle" / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    write_mp4(np.zeros((3, 16, 16, 3), dtype=np.uint8), src / "square" / "short.mp4", fps=12)
    longest = max(good, key=lambda p: probe(str(p)).num_frames)
    _truncate(longest, src / "triangle" / "cut.mp4", 0.7)
    (src / "notes.txt").write_text("not a video")
    out = tmp_path_factory.mktemp("ingest-out") / "shards"
    manifest = run_ingest(str(src), str(out), INGEST, DATA)
    return {"src": src, "out": out, "manifest": manifest, "good": good + [src / "loose.mp4"]}


def _all_rows(out: Path) -> dict[str, list]:
    rows: dict[str, list] = defaultdict(list)
    for uri in schema.shard_uris(str(out)):
        table = pq.read_table(uri, columns=list(schema.META_COLUMNS))
        for name in schema.META_COLUMNS:
            rows[name].extend(table.column(name).to_pylist())
    return rows


def test_clip_count_matches_the_plan(ingested: dict) -> None:
    src, manifest = ingested["src"], ingested["manifest"]
    expected = sum(len(plan_clips(probe(str(p)).num_frames, INGEST)) for p in ingested["good"])
    # The truncated file keeps exactly the planned clips that end before the damage.
    cut = src / "triangle" / "cut.mp4"
    n_ok = _decodable_frames(cut)
    kept = [s for s in plan_clips(probe(str(cut)).num_frames, INGEST) if s + INGEST.clip_len <= n_ok]
    assert kept, "the truncation point should leave at least one whole clip"
    rows = _all_rows(ingested["out"])
    assert len(rows["clip_id"]) == manifest["num_clips"] == expected + len(kept)
    assert sorted(s for s, v in zip(rows["start_frame"], rows["source"]) if v.endswith("cut.mp4")) == kept
    assert len(set(rows["clip_id"])) == len(rows["clip_id"])


def test_errors_account_for_every_bad_file(ingested: dict) -> None:
    src, out, manifest = ingested["src"], ingested["out"], ingested["manifest"]
    errors = schema.read_errors(str(out)).to_pylist()
    by_source = {Path(e["source"]).relative_to(src).as_posix(): e for e in errors}
    assert {k: v["stage"] for k, v in by_source.items()} == {
        "zero.mp4": "open",
        "circle/noise.mp4": "open",
        "square/short.mp4": "plan",
        "triangle/cut.mp4": "decode",
    }
    assert by_source["square/short.mp4"]["error_type"] == "TooShort"
    assert all(e["message"] and e["error_type"] for e in errors)
    # Invariant: every input is in the clips or in the errors.
    inputs = {str(p) for p in src.rglob("*.mp4")}
    in_clips = set(_all_rows(out)["source"])
    assert inputs == in_clips | {e["source"] for e in errors}
    assert manifest["num_inputs"] == len(inputs) == len(ingested["good"]) + 4
    assert manifest["num_files_with_clips"] == len(ingested["good"]) + 1  # + the truncated file
    assert manifest["num_files_with_errors"] == 4
    assert not (out / schema.ERRORS_SPOOL).exists()


def test_manifest_counts_labels_and_splits(ingested: dict) -> None:
    manifest, out = ingested["manifest"], ingested["out"]
    rows = _all_rows(out)
    assert json.loads((out / schema.MANIFEST_NAME).read_text()) == manifest
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert manifest["label_names"] == ["circle", "square", "triangle"]
    assert manifest["clip_shape"] == [8, 16, 16, 3]
    assert sum(manifest["clips_per_split"].values()) == manifest["num_clips"]
    assert sum(manifest["clips_per_label"].values()) == manifest["num_clips"]
    assert manifest["clips_per_label"].get("-1", 0) > 0  # loose.mp4
    assert len(manifest["shards"]) > 1 and sorted(manifest["shards"]) == manifest["shards"]
    for label, name in zip(rows["label"], rows["label_name"]):
        assert label == (manifest["label_names"].index(name) if name else -1)
    split_of: dict[str, set] = defaultdict(set)
    for vid, split in zip(rows["video_id"], rows["split"]):
        split_of[vid].add(split)
    assert all(s == {assign_split(v, INGEST.val_fraction, INGEST.test_fraction)} for v, s in split_of.items())
    for src, start, fps, start_s in zip(rows["source"], rows["start_frame"], rows["fps"], rows["start_s"]):
        assert start_s == pytest.approx(start / fps)  # frame_step 1: clip fps == source fps


def test_load_clips_returns_exactly_the_decoded_pixels(ingested: dict) -> None:
    out, manifest = ingested["out"], ingested["manifest"]
    total = 0
    for split in ("train", "val", "test"):
        frames, labels = load_clips(str(out), split)
        assert frames.dtype == np.uint8 and labels.dtype == np.int64
        assert frames.shape == (manifest["clips_per_split"][split], 8, 16, 16, 3)
        total += len(frames)
        # Same order as load_clips: shard order, then row order, filtered to the split.
        meta = [pq.read_table(u, columns=["source", "start_frame", "label"], filters=[("split", "=", split)])
                for u in schema.shard_uris(str(out))]
        sources = [s for t in meta for s in t.column("source").to_pylist()]
        starts = [s for t in meta for s in t.column("start_frame").to_pylist()]
        assert [x for t in meta for x in t.column("label").to_pylist()] == labels.tolist()
        decoded: dict[str, list[np.ndarray]] = {}
        for i, (source, start) in enumerate(zip(sources, starts)):
            if source not in decoded:
                decoded[source] = []
                try:
                    for f in iter_frames(source, INGEST.size):
                        decoded[source].append(f)
                except VideoDecodeError:
                    pass  # the truncated file: its kept clips precede the damage
            np.testing.assert_array_equal(frames[i], np.stack(decoded[source][start : start + 8]))
    assert total == manifest["num_clips"]
    every, every_label = load_clips(str(out), "train")
    for limit in (1, 3, len(every) + 5):  # cut inside the first shard, and past the end
        few, few_labels = load_clips(str(out), "train", limit=limit)
        assert few.shape[0] == few_labels.shape[0] == min(limit, len(every))
        np.testing.assert_array_equal(few, every[:limit])
        np.testing.assert_array_equal(few_labels, every_label[:limit])


def test_frames_to_numpy_reads_extension_and_storage(ingested: dict) -> None:
    uri = schema.shard_uris(str(ingested["out"]))[0]
    table = pq.read_table(uri)  # Ray is imported here, so 'frames' may arrive as an extension array
    a = frames_to_numpy(table.column("frames"), (8, 16, 16, 3))
    col = table.column("frames")
    storage = col.combine_chunks()
    storage = getattr(storage, "storage", storage)
    b = frames_to_numpy(storage.slice(1), (8, 16, 16, 3))  # honours slice offsets
    np.testing.assert_array_equal(a[1:], b)


def test_load_clips_does_not_import_ray(ingested: dict) -> None:
    code = (
        "import sys\n"
        "from vidgen_core.data.readers import load_clips\n"
        f"f, l = load_clips({str(ingested['out'])!r}, 'train')\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "print(f.shape[0], int(f.sum()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames, _ = load_clips(str(ingested["out"]), "train")
    assert proc.stdout.split() == [str(frames.shape[0]), str(int(frames.sum()))]


def test_read_split(ingested: dict) -> None:
    manifest = ingested["manifest"]
    ds = read_split(str(ingested["out"]), "train")
    assert ds.count() == manifest["clips_per_split"]["train"]
    batch = next(iter(ds.iter_batches(batch_size=4, batch_format="numpy")))
    assert set(batch) == {"frames", "label"}
    assert batch["frames"].shape[1:] == (8, 16, 16, 3) and batch["frames"].dtype == np.uint8


def test_read_split_in_memory_holds_the_split_one_block_per_shard_in_a_seeded_order(ingested: dict) -> None:
    out = str(ingested["out"])
    frames, labels = load_clips(out, "train")
    shards = sum(1 for _ in iter_shard_clips(out, "train"))
    ds = read_split_in_memory(out, "train", seed=3)
    assert ds.num_blocks() == shards
    rows = ds.take_all()
    got = sorted((int(r["label"]), r["frames"].tobytes()) for r in rows)
    assert got == sorted((int(lab), f.tobytes()) for f, lab in zip(frames, labels))
    first = [r["frames"].tobytes() for r in rows]
    assert first == [r["frames"].tobytes() for r in read_split_in_memory(out, "train", seed=3).take_all()]


def test_same_inputs_reuse_the_shards(ingested: dict) -> None:
    out = ingested["out"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_ingest(str(ingested["src"]), str(out), INGEST, DATA)
    assert again == ingested["manifest"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_half_written_output_is_redone(ray_cluster, synth_videos: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_videos / "circle", src / "circle")
    out = tmp_path / "out"
    (out / schema.ERRORS_SPOOL).mkdir(parents=True)
    (out / "part-000000-stale.parquet").write_bytes(b"half")
    (out / schema.ERRORS_SPOOL / "x.json").write_text("{}")
    manifest = run_ingest(str(src), str(out), INGEST, DATA)
    assert "part-000000-stale.parquet" not in os.listdir(out)
    assert manifest["num_files_with_errors"] == 0 and manifest["label_names"] == ["circle"]
    assert manifest["num_clips"] == sum(len(plan_clips(probe(str(p)).num_frames, INGEST)) for p in src.rglob("*.mp4"))
    # A changed config invalidates the old shards.
    other = run_ingest(str(src), str(out), INGEST.model_copy(update={"size": 8}), DATA)
    assert other["fingerprint"] != manifest["fingerprint"] and other["clip_shape"] == [8, 8, 8, 3]
    assert load_clips(str(out), "train")[0].shape[1:] == (8, 8, 8, 3)


def test_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        run_ingest(str(tmp_path / "nope"), str(tmp_path / "out"), INGEST, DATA)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "a.txt").write_text("x")
    with pytest.raises(UserError, match=r"no video files \(.*\.mp4.*\) found under"):
        run_ingest(str(tmp_path / "empty"), str(tmp_path / "out"), INGEST, DATA)
    (tmp_path / "v").mkdir()
    write_mp4(np.zeros((9, 16, 16, 3), dtype=np.uint8), tmp_path / "v" / "a.mp4", fps=12)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious.csv").write_text("keep me")
    with pytest.raises(UserError, match="did not write"):
        run_ingest(str(tmp_path / "v"), str(tmp_path / "busy"), INGEST, DATA)
    assert (tmp_path / "busy" / "precious.csv").exists()
