"""Drill: a labels file whose paths and label names try to leave the source and output folders."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from video_corpus import indexed, write_video

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.ingest import ingest_videos

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

EVIL_LABEL = "../../../../tmp/vidgen-evil-label"
SCRIPT_LABEL = "<script>alert(1)</script>"


def test_traversal_paths_and_names_in_a_labels_file_stay_text(ray_cluster, tmp_path: Path, caplog, drill) -> None:
    case = drill("path traversal in a labels file", "security",
                 "a labels file listing '../outside.mp4' (a real video beside the source), '/etc/passwd', and "
                 f"label names '{EVIL_LABEL}' and '{SCRIPT_LABEL}'",
                 "the outside files are never read or labelled (one warning names them); the names are kept "
                 "as plain labels; no file is written outside the output folder")
    src, out = tmp_path / "videos", tmp_path / "out"
    for rel in ("a.mp4", "b.mp4", "sub/c.mp4"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(src / rel, indexed(16))
    write_video(tmp_path / "outside.mp4", indexed(16))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n../outside.mp4,stolen\n/etc/passwd,stolen\n"
                      f"a.mp4,{EVIL_LABEL}\nb.mp4,\"{SCRIPT_LABEL}\"\nsub/c.mp4,circle\n")
    before = {p for p in tmp_path.rglob("*")}
    with caplog.at_level(logging.WARNING, logger="vidgen_core.data.inputs"):
        manifest = ingest_videos(str(src), str(out), IngestConfig(clip_len=4, size=16), DataConfig(labels_file=str(labels))).manifest

    written_outside = [p for p in set(tmp_path.rglob("*")) - before if p != out and out not in p.parents]
    assert written_outside == []
    assert not Path("/tmp/vidgen-evil-label").exists()
    rows = [r for uri in schema.shard_uris(str(out)) for r in pq.read_table(uri, columns=["source", "label_name"]).to_pylist()]
    sources = {r["source"].rsplit("/", 1)[-1] for r in rows}
    assert sources == {"a.mp4", "b.mp4", "c.mp4"} and manifest["num_inputs"] == 3  # outside.mp4 never read
    assert "stolen" not in manifest["label_names"]
    assert {r["label_name"] for r in rows} == {EVIL_LABEL, SCRIPT_LABEL, "circle"}  # kept verbatim, as text
    [warning] = [r.getMessage() for r in caplog.records if "labels_file" in r.getMessage()]
    assert "2 path(s)" in warning and "../outside.mp4" in warning and "etc/passwd" in warning
    case.figure = f"files read outside the source 0/2; files written outside the output 0; labels kept as text {len(manifest['label_names'])}/3"
