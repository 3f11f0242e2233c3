"""Drill: the disk fills up under ingest's output (a 1 MB tmpfs); a clear error, nothing half-written, and the
re-run after space is freed completes with exactly an undisturbed run's clips.

Needs permission to mount a tmpfs (root, as in CI's container); skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from video_corpus import write_video

from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.ingest import ingest_videos
from vidgen_core.errors import UserError

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

CFG = IngestConfig(clip_len=4, size=64, rows_per_shard=16)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs at ``tmp_path/disk``, unmounted at teardown; ``grow(mb)`` frees space by resizing it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {exc}")

    def grow(mb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={mb}m", str(mnt)], check=True, timeout=30)

    try:
        yield mnt, grow
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)


def _clips(out: Path) -> dict[str, str]:
    return {r["clip_id"]: hashlib.sha256(r["frames"]).hexdigest()
            for uri in schema.shard_uris(str(out)) for r in pq.read_table(uri, columns=["clip_id", "frames"]).to_pylist()}


def test_a_full_disk_fails_cleanly_and_the_rerun_completes(ray_cluster, tmp_path, small_disk, drill) -> None:
    case = drill("disk full under ingest", "fault",
                 "ingest writing ~2.3 MB of shards into a 1 MB tmpfs; then the tmpfs grown to 64 MB and the same ingest",
                 "one-line error saying the disk is full; no shard, spool or manifest left; the re-run's clips equal "
                 "an undisturbed run's")
    mnt, grow = small_disk
    src = tmp_path / "videos" / "a"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)  # noise: the shards do not compress below the disk's size
    for k in range(6):
        write_video(src / f"v{k}.mp4", list(rng.integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)))
    undisturbed = ingest_videos(str(src.parent), str(tmp_path / "undisturbed"), CFG, DataConfig()).manifest

    out = mnt / "shards"
    with pytest.raises(UserError, match="ran out of disk space") as err:
        ingest_videos(str(src.parent), str(out), CFG, DataConfig())
    assert "\n" not in str(err.value)
    left = sorted(p.name for p in out.iterdir())
    assert left == [], left  # nothing half-written, nothing that reads as a shard set

    grow(64)
    again = ingest_videos(str(src.parent), str(out), CFG, DataConfig()).manifest
    assert again["num_clips"] == undisturbed["num_clips"] and again["fingerprint"] == undisturbed["fingerprint"]
    assert _clips(out) == _clips(tmp_path / "undisturbed")
    case.figure = f"error lines 1; files left after the failure 0; re-run clips equal {again['num_clips']}/{undisturbed['num_clips']}"
