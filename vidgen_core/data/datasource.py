"""A Ray Data datasource whose read tasks turn video files into clip shards (schema.CLIP_COLUMNS).

It does the job of a ``FileBasedDatasource`` (files -> read tasks -> blocks)
but takes the file list the driver already made, because every file carries
what only the driver knows: its id, label and split. Each read task gets its
own files (balanced by size), opens each one *seekably* through pyarrow.fs
(``open_input_file``: MP4 indexes may sit at the end, and sparse plans seek),
and writes blocks of clips straight into its shards (:mod:`shard_writer`), so a
task never holds more than a block and one video's rolling window.

A file that fails writes one small JSON record into the ``spool`` folder
(through pyarrow.fs, so it works on any node and store) and the task goes on
with the next file; a file damaged mid-stream keeps its clips before the
damage *and* writes a record. Read tasks never raise for a bad video.

A file whose decoding kills the worker process (an FFmpeg crash, the OOM
killer) cannot be caught in Python, and Ray Data retries a task whose worker
died without limit, so one such file would hang the run. Each file is
therefore *claimed* in the spool before it is decoded and released after: a
retried task that finds a claim knows an earlier attempt died inside that file.
After ``CRASHES_BEFORE_SKIP`` such deaths the file gets an error record
(``WorkerCrash``) and is skipped; a single death (a node lost) still earns a retry.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from vidgen_core import storage
from vidgen_core.config import IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.clips import iter_clips
from vidgen_core.data.plan import make_clip_id
from vidgen_core.data.shard_writer import ShardWriter, task_prefix
from vidgen_core.video.decode import VideoError, VideoReader

try:  # Ray is an adapter at the edge: this module is only imported where Ray runs.
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask
except ImportError as exc:  # pragma: no cover
    raise ImportError("vidgen_core.data.datasource needs ray[data]") from exc

# Blocks of about this many bytes of pixels: big enough that per-block costs vanish, small enough to stream.
BLOCK_BYTES = 16 << 20


# Deaths of the decoding process inside one file before that file is skipped (see the module doc).
CRASHES_BEFORE_SKIP = 2
# Fault injection for the reliability drills: the process decoding a file whose path contains this
# variable's value dies by SIGSEGV, as in an FFmpeg crash; with the suffix "@once", only on the
# file's first attempt. Unset in normal use; forwarded to Ray workers by ingest.
CRASH_ENV = "VIDGEN_TESTING_CRASH_DECODER"


def fault_injection_env() -> dict[str, str]:
    """The driver's fault-injection variables, for a task's ``runtime_env`` (empty in normal use)."""
    return {CRASH_ENV: os.environ[CRASH_ENV]} if os.environ.get(CRASH_ENV) else {}


def _claim_uri(spool: str, row: dict[str, Any]) -> str:
    return storage.join(spool, f"{row['video_id']}.claim")


def claim(spool: str, row: dict[str, Any]) -> int:
    """Mark ``row``'s file as being decoded; returns how many earlier attempts died inside it.

    The claim file holds the number of claims not released, i.e. of attempts that died.
    """
    uri = _claim_uri(spool, row)
    try:
        deaths = int(storage.read_bytes(uri) or b"0")
    except FileNotFoundError:
        deaths = 0
    storage.write_bytes_atomic(uri, str(deaths + 1).encode())
    return deaths


def release(spool: str, row: dict[str, Any]) -> None:
    """The file of ``row`` is done (clips yielded or error recorded): drop its claim."""
    fs, path = storage.resolve(_claim_uri(spool, row))
    fs.delete_file(path)


def _inject_crash(source: str, deaths: int) -> None:
    spec = os.environ.get(CRASH_ENV, "")
    pattern, once = (spec[: -len("@once")], True) if spec.endswith("@once") else (spec, False)
    if pattern and pattern in source and not (once and deaths):
        os.kill(os.getpid(), signal.SIGSEGV)


def record_error(spool: str, row: dict[str, Any], stage: str, error_type: str, message: str, num_clips: int) -> None:
    """Write ``spool/<video_id>.json``: the file, the stage that failed and why."""
    record = {
        "source": row["source"],
        "video_id": row["video_id"],
        "stage": stage,
        "error_type": error_type,
        "message": message,
        "num_clips": num_clips,
    }
    storage.write_bytes_atomic(storage.join(spool, f"{row['video_id']}.json"), json.dumps(record).encode())


def clip_rows(row: dict[str, Any], cfg: IngestConfig, spool: str) -> Iterator[dict[str, Any]]:
    """The clip rows of one input file (``frames``: the clip's T frames); failures go to ``spool`` (never raised)."""
    src = row["source"]
    stage, n = "open", 0
    try:
        with VideoReader(src) as reader:
            stage = "decode"
            fps = reader.info.fps
            for clip in iter_clips(reader, cfg):
                yield {
                    schema.COL_CLIP_ID: make_clip_id(src, clip.start_frame, cfg, clip.sample),
                    schema.COL_VIDEO_ID: row["video_id"],
                    schema.COL_SOURCE: src,
                    schema.COL_START_FRAME: clip.start_frame,
                    schema.COL_START_S: clip.start_s,
                    schema.COL_FPS: float(cfg.target_fps) if cfg.target_fps else fps / cfg.frame_step,
                    schema.COL_SPLIT: row["split"],
                    schema.COL_LABEL: row["label"],
                    schema.COL_LABEL_NAME: row["label_name"],
                    schema.COL_FRAMES: clip.frame_list,
                }
                n += 1
            if reader.probe_warning:  # damage after the last frame the plan needed
                record_error(spool, row, "probe", "Damaged", reader.probe_warning, n)
    except VideoError as exc:
        error_type = "TooShort" if exc.stage == "plan" else exc.error_type
        record_error(spool, row, exc.stage, error_type, str(exc), n)
    except Exception as exc:  # noqa: BLE001 - any other failure must still be accounted
        record_error(spool, row, stage, type(exc).__name__, f"'{src}': {exc}", n)


def to_block(rows: list[dict[str, Any]], frames: np.ndarray) -> pa.Table:
    """Clip rows (without pixels) and their uint8 ``(B, T, H, W, 3)`` C-order ``frames`` -> an Arrow
    table of ``schema.clip_schema``; the pixels are not copied again."""
    target = schema.clip_schema(frames.shape[1:])
    width = target.field(schema.COL_FRAMES).type.byte_width
    pixels = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(rows), [None, pa.py_buffer(frames)])
    columns = [pa.array([r[f.name] for r in rows], type=f.type) for f in target if f.name != schema.COL_FRAMES]
    return pa.Table.from_arrays([*columns, pixels], schema=target)


def read_files(
    files: list[dict[str, Any]], ingest: dict[str, Any], spool: str, out: str, batch: str, task_index: int,
    progress_key: str | None = None,
) -> Iterator[pa.Table]:
    """One read task: decode ``files`` and write their clips as shards under ``out``
    (:mod:`vidgen_core.data.shard_writer`: one block of about BLOCK_BYTES in memory at a time).

    Yields one small table, ``shard`` and ``rows`` of each shard written. Files and
    frames done are counted on the progress board under ``progress_key``.
    """
    from vidgen_core.progress import Reporter

    progress = Reporter(progress_key)
    cfg = IngestConfig.model_validate(ingest)
    shape = (cfg.clip_len, cfg.size, cfg.size, 3)
    writer = ShardWriter(out, task_prefix(batch, task_index), cfg.rows_per_shard, schema.clip_schema(shape))
    attempt = storage.join(spool, f"task-{task_index:06d}.attempt")
    if storage.exists(attempt):  # a retry: what the earlier attempt wrote may not be what this one writes
        writer.remove_earlier_attempt()
    storage.write_bytes_atomic(attempt, b"")
    per_block = max(1, BLOCK_BYTES // int(np.prod(shape)))
    # Each frame is copied once, from swscale's output straight into its block (np.empty
    # touches no memory until written).
    pixels = np.empty((per_block, *shape), dtype=np.uint8)
    rows: list[dict[str, Any]] = []
    for row in files:
        deaths = claim(spool, row)
        if deaths >= CRASHES_BEFORE_SKIP:
            message = (f"'{row['source']}': the process decoding it died {deaths} times "
                       "(a decoder crash or out of memory); skipped")
            record_error(spool, row, "decode", "WorkerCrash", message, 0)
            release(spool, row)
            progress.add(files=1)
            continue
        if deaths:  # counted in the manifest (``worker_deaths``): a crash that a retry got past is still news
            storage.write_bytes_atomic(storage.join(spool, f"{row['video_id']}.deaths"), str(deaths).encode())
        _inject_crash(row["source"], deaths)
        clips = 0
        for clip in clip_rows(row, cfg, spool):
            for t, frame in enumerate(clip.pop(schema.COL_FRAMES)):
                pixels[len(rows), t] = frame
            rows.append(clip)
            clips += 1
            if len(rows) == per_block:
                writer.add(to_block(rows, pixels))
                rows = []  # the same pixel buffer is reused: the writer has copied what it needs
        release(spool, row)
        progress.add(files=1, clips=clips, frames=clips * cfg.clip_len)
    if rows:
        writer.add(to_block(rows, pixels[: len(rows)]))
    written = writer.finish()
    progress.flush()
    yield pa.table({"shard": [n for n, _ in written], "rows": [r for _, r in written]},
                   schema=pa.schema([("shard", pa.string()), ("rows", pa.int64())]))


def balance(files: list[dict[str, Any]], groups: int) -> list[list[dict[str, Any]]]:
    """Split ``files`` into at most ``groups`` lists of similar total size (largest first, each to the lightest)."""
    groups = max(1, min(groups, len(files)))
    bins: list[list[dict[str, Any]]] = [[] for _ in range(groups)]
    load = [0] * groups
    for f in sorted(files, key=lambda f: -f["size"]):
        i = load.index(min(load))
        bins[i].append(f)
        load[i] += f["size"]
    return [b for b in bins if b]


class VideoClipDatasource(Datasource):
    """Ray Data source: input-file records (``source``, ``size``, ``video_id``, ``split``, ``label``,
    ``label_name``) -> clip shards under ``out`` (rows coming back: shard names). Read with ``ray.data.read_datasource(ds, override_num_blocks=N)``:
    ``N`` read tasks of balanced size."""

    def __init__(
        self, files: list[dict[str, Any]], ingest: IngestConfig, spool: str, out: str, batch: str,
        progress_key: str | None = None,
    ) -> None:
        super().__init__()
        self._files = files
        self._ingest = ingest.model_dump(mode="json")
        self._spool = spool
        self._out = out
        self._batch = batch
        self._progress_key = progress_key

    def get_name(self) -> str:
        return "VideoClips"

    def estimate_inmemory_data_size(self) -> int | None:
        return None  # decoded size depends on each video's length, unknown before probing

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        tasks = []
        for group in balance(self._files, parallelism):
            meta = BlockMetadata(
                num_rows=None,
                size_bytes=None,
                input_files=[f["source"] for f in group],
                exec_stats=None,
            )
            ingest, spool, key, out, batch = self._ingest, self._spool, self._progress_key, self._out, self._batch

            def read_fn(group: list[dict[str, Any]] = group, index: int = len(tasks)) -> Iterator[Any]:
                return read_files(group, ingest, spool, out, batch, index, key)

            tasks.append(ReadTask(read_fn, meta, per_task_row_limit=per_task_row_limit))
        return tasks
