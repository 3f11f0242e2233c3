"""Drills: 20 kinds of broken and odd videos through ingest (on real local Ray), embed's decoder and compress.

Among them a valid file whose decoding kills the worker process (fault injected
as a SIGSEGV, as an FFmpeg crash would): the run must finish with that file in
the error list, not fail or hang.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from codec_fixtures import tiny_codec
from video_corpus import indexed, make_corpus, make_more_kinds, write_video

from vidgen_core.codec.files import compress_file
from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.datasource import CRASH_ENV, CRASHES_BEFORE_SKIP
from vidgen_core.data.ingest import ingest_videos
from vidgen_core.errors import UserError
from vidgen_core.uses.videos import VideoInput, iter_video_clips

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

CFG = IngestConfig(clip_len=4, size=32, rows_per_shard=8, val_fraction=0.2, test_fraction=0.2)
CRASHER = "bad/crashes_decoder.mp4"
# Error types that say nothing specific: a file reported with one of them is a drill failure.
VAGUE = {"", "Exception", "RuntimeError", "LostOutput"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    src = tmp_path_factory.mktemp("drill-corpus") / "videos"
    expect = {**make_corpus(src), **make_more_kinds(src)}
    write_video(src / CRASHER, indexed(30))
    expect[CRASHER] = {"stage": "decode", "clips": False, "error_type": "WorkerCrash"}
    return src, expect


def test_ingest_accounts_for_every_broken_file(ray_cluster, corpus, tmp_path, monkeypatch, drill) -> None:
    src, expect = corpus
    case = drill(
        "broken and odd videos through ingest", "bad input",
        f"{len(expect)} files of 20 kinds (empty, random bytes, text, audio only, 1 and 3 frames, cut mid-packet, "
        "index missing, 40000x40000 header, 1x1 px, 10-bit, yuv444 odd size, interlaced, anamorphic, VFR, VP9, "
        "MPEG-4/AVI, wrong extension) + a file whose decoder crashes its worker (SIGSEGV)",
        "each file in the clips or the error list with its expected stage and reason; the run finishes",
    )
    monkeypatch.setenv(CRASH_ENV, Path(CRASHER).name)
    out = tmp_path / "shards"
    manifest = ingest_videos(str(src), str(out), CFG, DataConfig()).manifest

    errors = {Path(e["source"]).relative_to(src).as_posix(): e for e in schema.read_errors(str(out)).to_pylist()}
    clips_of: Counter[str] = Counter()
    for uri in schema.shard_uris(str(out)):
        clips_of.update(Path(s).relative_to(src).as_posix() for s in pq.read_table(uri, columns=["source"])[0].to_pylist())
    accounted, as_expected = 0, 0
    for rel, e in expect.items():
        has_clips, err = clips_of[rel] > 0, errors.get(rel)
        accounted += has_clips or err is not None
        if e["stage"] is None:
            ok = has_clips and err is None
        else:
            ok = (err is not None and has_clips == e["clips"] and err["stage"] == e["stage"]
                  and err["error_type"] not in VAGUE and e["error_type"] in (None, err["error_type"])
                  and Path(rel).name in err["message"])
        as_expected += ok
        assert ok, (rel, e, err, clips_of[rel])
    crash = errors[CRASHER]
    assert f"died {CRASHES_BEFORE_SKIP} times" in crash["message"]
    assert manifest["num_inputs"] == len(expect)
    assert not any(".claim" in p.name or ".tmp" in p.name for p in out.rglob("*"))
    case.figure = (f"files accounted {accounted}/{len(expect)}; stage and reason as expected {as_expected}/{len(expect)}; "
                   f"crashing file skipped after {CRASHES_BEFORE_SKIP} worker deaths")


def test_embed_decoder_names_every_bad_file(corpus, drill) -> None:
    src, expect = corpus
    case = drill(
        "broken and odd videos through embed's decoder", "bad input",
        f"the same {len(expect) - 1} files (not the crash injection) given to `vidgen embed`'s clip decoder",
        "clips from each clean file; a one-line error naming each bad file",
    )
    ok = 0
    for rel, e in expect.items():
        if rel == CRASHER:
            continue
        try:
            clips = sum(len(b.frames) for b in iter_video_clips(VideoInput(str(src / rel)), CFG, batch_size=8))
            good = e["stage"] is None and clips > 0
        except UserError as exc:
            good = e["stage"] is not None and Path(rel).name in str(exc) and "\n" not in str(exc)
        assert good, rel
        ok += good
    case.figure = f"files with clips or a one-line error naming them {ok}/{len(expect) - 1}"


def test_compress_refuses_bad_files_and_leaves_nothing_behind(corpus, tmp_path, drill) -> None:
    src, expect = corpus
    case = drill(
        "broken and odd videos through compress", "bad input",
        f"the same {len(expect) - 1} files given to `vidgen compress` (a small codec model)",
        "a .vgc per clean file; a one-line error naming each bad file; no partial or temporary file",
    )
    model = tiny_codec()
    out_dir = tmp_path / "vgc"
    out_dir.mkdir()
    made, refused = set(), 0
    for rel, e in expect.items():
        if rel == CRASHER:
            continue
        target = out_dir / (rel.replace("/", "_") + ".vgc")
        try:
            compress_file(str(src / rel), str(target), model)
            # A clean file, one too short for a training clip (any length compresses), or one damaged
            # after its first frames.
            assert e["clips"] or e["stage"] == "plan", rel
            made.add(target.name)
        except UserError as exc:
            assert e["stage"] not in (None, "plan"), (rel, exc)
            assert Path(rel).name in str(exc) and "\n" not in str(exc), exc
            refused += 1
    assert {p.name for p in out_dir.iterdir()} == made  # nothing half-written, no temporary names
    total = len(made) + refused
    case.figure = f"compressed {len(made)}, refused with one line {refused}, files left behind 0 (of {total})"
