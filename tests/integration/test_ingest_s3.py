"""Ingest from and to s3:// against a local S3-compatible server (moto's server mode on 127.0.0.1).

S3 settings reach pyarrow through the usual AWS variables (AWS_ENDPOINT_URL,
credentials); ingest forwards them to its Ray tasks, whose workers were started
before this test set them.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.ingest import ingest_videos
from vidgen_core.data.plan import plan_clips
from vidgen_core.data.readers import load_clips
from vidgen_core.video.decode import probe

pytestmark = pytest.mark.integration

CFG = IngestConfig(clip_len=8, size=16, rows_per_shard=8, val_fraction=0.25, test_fraction=0.25)
BUCKET = "vidgen-test"


@pytest.fixture()
def s3(monkeypatch) -> pafs.S3FileSystem:
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        fs = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="testing", secret_key="testing",
            region="us-east-1", allow_bucket_creation=True,
        )
        fs.create_dir(BUCKET)
        yield fs
    finally:
        server.stop()


def test_s3_source_and_destination(ray_cluster, synth_videos: Path, s3: pafs.S3FileSystem) -> None:
    local = sorted(synth_videos.rglob("*.mp4"))[:4]
    for p in local:
        with s3.open_output_stream(f"{BUCKET}/videos/{p.parent.name}/{p.name}") as f:
            f.write(p.read_bytes())
    with s3.open_output_stream(f"{BUCKET}/videos/broken.mp4") as f:
        f.write(b"not a video")

    src, out = f"s3://{BUCKET}/videos", f"s3://{BUCKET}/shards"
    result = ingest_videos(src, out, CFG, DataConfig())
    m = result.manifest
    expected = sum(len(plan_clips(probe(str(p)).num_frames, CFG, probe(str(p)).fps)) for p in local)
    assert m["num_inputs"] == 5 and m["num_clips"] == expected and m["num_files_with_errors"] == 1
    assert m["source"] == src
    errors = schema.read_errors(out).to_pylist()
    assert [(e["source"], e["stage"]) for e in errors] == [(f"{src}/broken.mp4", "open")]
    frames, labels = load_clips(out, "train")
    assert frames.shape == (m["clips_per_split"]["train"], 8, 16, 16, 3) and len(labels) == len(frames)
    names = {i.base_name for i in s3.get_file_info(pafs.FileSelector(f"{BUCKET}/shards"))}
    assert schema.MANIFEST_NAME in names and set(m["shards"]) <= names and schema.ERRORS_SPOOL not in names
    # The whole video came through a seekable S3 file and the clips equal the local decode.
    from vidgen_core.video.decode import iter_frames

    assert probe(f"{src}/{local[0].parent.name}/{local[0].name}") == probe(str(local[0]))
    first_remote = next(iter_frames(f"{src}/{local[0].parent.name}/{local[0].name}", 16))
    assert (first_remote == next(iter_frames(str(local[0]), 16))).all()

    again = ingest_videos(src, out, CFG, DataConfig())
    assert again.up_to_date and again.manifest == m
