"""Ingest: a directory (or bucket) of videos -> clip shards, with Ray Data.

Driver: list the videos (pyarrow.fs), give each a label from its class folder,
an id and a split. Ray Data: one row per file -> ``flat_map`` probes, plans and
decodes it into clip rows -> ``write_parquet``. A file that fails writes one
small JSON record into ``out/_errors/`` (through pyarrow.fs, so it works on any
node and store) and yields no further rows; the driver merges those records
into ``errors.parquet``, checks that every input is in the clips or the errors,
and writes ``manifest.json`` last.

A truncated file keeps the clips decoded before the damage *and* gets an error
row, so the invariant "every input is in the clips or in the errors" holds with
possible overlap, never with a gap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import vidgen_core
from vidgen_core import storage
from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.data import schema
from vidgen_core.data.plan import SPLITS, assign_split, make_clip_id, min_frames, plan_clips, video_id_of
from vidgen_core.errors import UserError
from vidgen_core.video.decode import VideoError, iter_frames, probe

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- listing (driver)


def list_inputs(source: str, extensions: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Video files under ``source`` (recursive, sorted by relative path) and the class names.

    Returns:
        ``(rows, label_names)``: one dict per file with ``source`` (URI), ``rel``,
        ``size``, ``mtime_ns``, ``video_id``, ``label``, ``label_name``; labels
        index the sorted first-level folder names (-1 and "" for files in the root).

    Raises:
        UserError: ``source`` is missing, not a directory, or holds no video files.
    """
    fs, root = storage.resolve(source)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"source '{source}' does not exist")
    if info.type != pafs.FileType.Directory:
        raise UserError(f"source '{source}' is not a directory; point data.source at a folder of videos")
    exts = tuple(sorted({e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}))
    files = []
    for fi in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        rel = fi.path[len(root) :].lstrip("/")
        # Hidden names (".x.mp4.tmp", macOS "._x.mp4") are never videos we want.
        if fi.type != pafs.FileType.File or any(p.startswith(".") for p in rel.split("/")):
            continue
        if fi.base_name.lower().endswith(exts):
            files.append((rel, fi))
    if not files:
        raise UserError(f"no video files ({', '.join(exts)}) found under '{source}'")
    files.sort(key=lambda x: x[0])
    label_names = sorted({rel.split("/", 1)[0] for rel, _ in files if "/" in rel})
    base = storage.normalize(source)
    rows = []
    for rel, fi in files:
        cls = rel.split("/", 1)[0] if "/" in rel else ""
        rows.append(
            {
                "source": storage.join(base, rel),
                "rel": rel,
                "size": int(fi.size or 0),
                "mtime_ns": int(fi.mtime_ns or 0),
                "video_id": video_id_of(rel),
                "label": label_names.index(cls) if cls else -1,
                "label_name": cls,
            }
        )
    return rows, label_names


def ingest_fingerprint(source: str, rows: list[dict[str, Any]], ingest: IngestConfig, data: DataConfig) -> str:
    """sha256 of the file list (relative path, size, mtime), source, ingest config and schema version."""
    key = {
        "files": [[r["rel"], r["size"], r["mtime_ns"]] for r in rows],
        "source": storage.normalize(source),
        "ingest": ingest.model_dump(mode="json"),
        "extensions": sorted(data.extensions),
        "schema_version": schema.SCHEMA_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _prepare_out(out: str) -> None:
    """Empty ``out`` of an earlier (maybe half-written) ingest; refuse to touch anything else."""
    fs, root = storage.resolve(out)
    entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    ours = {schema.MANIFEST_NAME, schema.ERRORS_NAME, schema.ERRORS_SPOOL}
    foreign = [
        e.base_name
        for e in entries
        if not (e.base_name in ours or schema.is_shard_name(e.base_name) or ".tmp" in e.base_name)
    ]
    if foreign:
        raise UserError(
            f"output '{out}' holds files ingest did not write (e.g. '{foreign[0]}'); use an empty or new directory"
        )
    # Manifest first: from here on the directory reads as incomplete.
    for e in sorted(entries, key=lambda e: e.base_name != schema.MANIFEST_NAME):
        if e.type == pafs.FileType.Directory:
            fs.delete_dir(e.path)
        else:
            fs.delete_file(e.path)
    fs.create_dir(root, recursive=True)


# ---------------------------------------------------------------- per file (Ray workers)


def _decode_clips(path: str, starts: list[int], cfg: IngestConfig) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start_frame, clip)`` for each planned start; clip is uint8 ``(T, size, size, 3)``.

    Decodes sequentially and keeps only the last ``clip_len`` sampled frames
    (clips may overlap when stride < clip_len), so memory does not grow with
    the video's length. Stops decoding after the last planned frame.
    """
    step, t = cfg.frame_step, cfg.clip_len
    ends = [s // step + t - 1 for s in starts]  # sampled index of each clip's last frame
    window: deque[np.ndarray] = deque(maxlen=t)
    k = 0
    frames = iter_frames(path, cfg.size, step)
    try:
        for j, frame in enumerate(frames):
            window.append(frame)
            while k < len(starts) and ends[k] == j:
                yield starts[k], np.stack(window)
                k += 1
            if k == len(starts):
                return
    finally:
        frames.close()
    if k < len(starts):  # the stream ended without an error but short of the plan
        raise VideoError(f"'{path}' ended before clip {k} of {len(starts)}", stage="decode", source=path)


def _ids(row: dict[str, Any]) -> dict[str, str]:
    return {"source": row["source"], "video_id": row["video_id"]}


def _record_error(spool: str, row: dict[str, Any], stage: str, error_type: str, message: str) -> None:
    record = {**_ids(row), "stage": stage, "error_type": error_type, "message": message}
    storage.write_bytes_atomic(storage.join(spool, f"{row['video_id']}.json"), json.dumps(record).encode())


def clips_of_file(row: dict[str, Any], ingest: dict[str, Any], spool: str) -> Iterator[dict[str, Any]]:
    """Ray Data ``flat_map`` UDF: one input-file row -> its clip rows (schema.CLIP_COLUMNS).

    Never raises for a bad video: the failure goes to ``spool/<video_id>.json``.
    """
    cfg = IngestConfig.model_validate(ingest)
    src = row["source"]
    stage = "probe"
    try:
        info = probe(src)
        starts = plan_clips(info.num_frames, cfg)
        if not starts:
            stage = "plan"
            raise VideoError(
                f"'{src}' has {info.num_frames} frames, fewer than the {min_frames(cfg)} one clip needs "
                f"(clip_len={cfg.clip_len}, frame_step={cfg.frame_step})",
                stage="plan",
                source=src,
            )
        stage = "decode"
        for start, clip in _decode_clips(src, starts, cfg):
            yield {
                schema.COL_CLIP_ID: make_clip_id(src, start, cfg),
                schema.COL_VIDEO_ID: row["video_id"],
                schema.COL_SOURCE: src,
                schema.COL_START_FRAME: start,
                schema.COL_START_S: start / info.fps,
                schema.COL_FPS: info.fps / cfg.frame_step,
                schema.COL_SPLIT: row["split"],
                schema.COL_LABEL: row["label"],
                schema.COL_LABEL_NAME: row["label_name"],
                schema.COL_FRAMES: clip,
            }
    except VideoError as exc:
        error_type = "TooShort" if exc.stage == "plan" else exc.error_type
        _record_error(spool, row, exc.stage, error_type, str(exc))
    except Exception as exc:  # noqa: BLE001 - any other failure must still be accounted
        _record_error(spool, row, stage, type(exc).__name__, f"'{src}': {exc}")


def _shard_names() -> Any:
    """A Ray FilenameProvider naming shards ``part-<task>-<write uuid>.parquet`` (Ray may add ``-<i>``)."""
    from ray.data.datasource import FilenameProvider

    class ShardNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"{schema.SHARD_PREFIX}{task_index:06d}-{write_uuid}{schema.SHARD_SUFFIX}"

    return ShardNames(file_format="parquet")


# ---------------------------------------------------------------- accounting (driver)


def _collect_spool(out: str) -> list[dict[str, Any]]:
    fs, root = storage.resolve(storage.join(out, schema.ERRORS_SPOOL))
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    records = []
    for fi in sorted(infos, key=lambda i: i.path):
        if fi.type == pafs.FileType.File and fi.base_name.endswith(".json"):
            with fs.open_input_stream(fi.path) as f:
                records.append(json.loads(f.read()))
    if fs.get_file_info(root).type == pafs.FileType.Directory:
        fs.delete_dir(root)
    return records


def _clip_meta(shards: list[str]) -> dict[str, list[Any]]:
    """Non-pixel columns of all shards (cheap: Parquet reads only these columns)."""
    cols = [schema.COL_VIDEO_ID, schema.COL_SPLIT, schema.COL_LABEL]
    meta: dict[str, list[Any]] = {c: [] for c in cols}
    for uri in shards:
        fs, path = storage.resolve(uri)
        table = pq.read_table(path, filesystem=fs, columns=cols)
        for c in cols:
            meta[c].extend(table.column(c).to_pylist())
    return meta


def _reusable(out: str, fp: str) -> dict[str, Any] | None:
    """The manifest in ``out`` if it is complete, current and matches ``fp``; else None."""
    try:
        manifest = schema.read_manifest(out)
        present = {u.rsplit("/", 1)[1] for u in schema.list_shards(out)}
        if manifest.get("fingerprint") == fp and set(manifest["shards"]) <= present:
            return manifest
    except (schema.ShardsNotFoundError, ValueError, KeyError):  # missing, old schema, unreadable
        pass
    return None


def run_ingest(source: str, out: str, ingest: IngestConfig, data: DataConfig) -> dict[str, Any]:
    """Turn the videos under ``source`` into clip shards under ``out``; returns the manifest.

    Reuses ``out`` as is when its manifest has the same fingerprint; otherwise
    clears it (only files ingest writes) and redoes the work. Ray is initialized
    locally if the caller has not done so.

    Raises:
        UserError: missing/empty source, a foreign non-empty ``out``, or no clips at all.
    """
    rows, label_names = list_inputs(source, data.extensions)
    fp = ingest_fingerprint(source, rows, ingest, data)
    out = storage.normalize(out)
    reused = _reusable(out, fp)
    if reused is not None:
        log.info("ingest: reusing %s (fingerprint %s)", out, fp[:12])
        return reused
    _prepare_out(out)
    for r in rows:
        r["split"] = assign_split(r["video_id"], ingest.val_fraction, ingest.test_fraction)

    import ray
    import ray.data

    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    t0 = time.time()
    spool = storage.join(out, schema.ERRORS_SPOOL)
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), 1000))
    ds = ds.flat_map(
        clips_of_file,
        fn_kwargs={"ingest": ingest.model_dump(mode="json"), "spool": spool},
        num_cpus=1,  # decoding is single-threaded per file; one CPU per task, files in parallel
    )
    ds.write_parquet(
        out,
        filename_provider=_shard_names(),
        min_rows_per_file=ingest.rows_per_shard,
        max_rows_per_file=ingest.rows_per_shard,
    )

    errors = _collect_spool(out)
    shards = schema.list_shards(out)
    meta = _clip_meta(shards)
    with_clips = set(meta[schema.COL_VIDEO_ID])
    with_errors = {e["video_id"] for e in errors}
    for r in rows:  # the invariant, enforced: nothing disappears silently
        if r["video_id"] not in with_clips | with_errors:
            message = f"'{r['source']}' produced neither clips nor an error record"
            errors.append({**_ids(r), "stage": "ingest", "error_type": "LostOutput", "message": message})
    schema.write_errors(out, errors)
    if not with_clips:
        raise UserError(
            f"ingest made no clips from {len(rows)} files under '{source}'; see {storage.join(out, schema.ERRORS_NAME)}"
        )

    per_split = Counter(meta[schema.COL_SPLIT])
    per_label = Counter(meta[schema.COL_LABEL])
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "fingerprint": fp,
        "code_version": vidgen_core.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": storage.normalize(source),
        "config": {"ingest": ingest.model_dump(mode="json"), "data": data.model_dump(mode="json")},
        "num_inputs": len(rows),
        "num_files_with_clips": len(with_clips),
        "num_files_with_errors": len({e["video_id"] for e in errors}),
        "num_clips": len(meta[schema.COL_VIDEO_ID]),
        "clips_per_split": {s: per_split.get(s, 0) for s in SPLITS},
        "clips_per_label": {str(k): v for k, v in sorted(per_label.items())},
        "label_names": label_names,
        "clip_shape": [ingest.clip_len, ingest.size, ingest.size, 3],
        "shards": [u.rsplit("/", 1)[1] for u in shards],
        "ingest_seconds": round(time.time() - t0, 3),
    }
    schema.write_manifest(out, manifest)  # last: its presence marks the shard set complete
    return manifest
