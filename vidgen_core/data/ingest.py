"""Ingest: a directory (or bucket) of videos -> clip shards, with Ray Data.

Driver: list the videos (pyarrow.fs), give each an id, a label and a split,
and compare with what an earlier run into the same output recorded
(:mod:`vidgen_core.data.state`): only new, changed or (``retry_failed``)
failed files are read. Ray Data: the read tasks of :class:`VideoClipDatasource`
decode those files and write their clips as shards themselves, a block at a
time (memory per task: one block, whatever a video's length). Then the driver merges the error
records, checks that every input is in the clips or the errors, writes the
ledger, ``_errors.parquet`` and, last and atomically, ``_manifest.json`` (bookkeeping names
start with ``_`` so that Parquet readers pointed at the folder see clips only).

A truncated file keeps the clips decoded before the damage *and* gets an error
row, so the invariant "every input is in the clips or in the errors" holds with
possible overlap, never with a gap.
"""

from __future__ import annotations

import errno
import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

import vidgen_core
from vidgen_core import storage
from vidgen_core.config import DataConfig, IngestConfig, fingerprint
from vidgen_core.data import schema, state
from vidgen_core.data.inputs import labels_digest, list_inputs
from vidgen_core.data.plan import SPLITS, assign_split
from vidgen_core.errors import UserError
from vidgen_core.progress import Reporter

log = logging.getLogger(__name__)

# One file per read task while there are few (up to 32 per CPU): file costs vary a lot (size is a
# poor guide to frames x resolution), and small tasks let Ray balance them as CPUs free up. Beyond
# that, tasks of up to 16 files keep scheduling costs down.
_TASKS_PER_CPU = 32
_FILES_PER_TASK = 16


@dataclass(frozen=True)
class IngestResult:
    """The manifest, and what this run did (all zero when the output was already up to date)."""

    manifest: dict[str, Any]
    files: int  # files read in this run
    clips: int  # clips written in this run
    errors: int  # files of this run with an error record
    seconds: float
    up_to_date: bool

    def summary(self) -> str:
        m = self.manifest
        splits = ", ".join(f"{s} {m['clips_per_split'].get(s, 0)}" for s in SPLITS)
        total = (
            f"{m['num_clips']} clips from {m['num_files_with_clips']}/{m['num_inputs']} files "
            f"({m['num_files_with_errors']} with errors); per split: {splits}"
        )
        if self.up_to_date:
            return f"up to date, nothing read: {total}"
        rate = 1 / self.seconds if self.seconds > 0 else 0.0
        frames = self.clips * m["clip_shape"][0]
        return (
            f"read {self.files} files in {self.seconds:.1f}s: {self.clips} clips, {self.errors} with errors, "
            f"{self.clips * rate:.1f} clips/s, {frames * rate:.0f} frames/s; in total {total}"
        )


def config_fingerprint(source: str, ingest: IngestConfig, data: DataConfig) -> str:
    """What makes earlier shards reusable: source, ingest and data config, labels file content, schema."""
    key = {
        "source": storage.normalize(source),
        "ingest": ingest.model_dump(mode="json"),
        "extensions": sorted(data.extensions),
        "labels": labels_digest(data),
        "schema_version": schema.SCHEMA_VERSION,
    }
    return fingerprint(key)


def _data_fingerprint(config_fp: str, ledger: list[dict[str, Any]], label_names: list[str]) -> str:
    files = sorted([r["rel"], r["size"], r["mtime_ns"]] for r in ledger)
    return fingerprint({"config": config_fp, "files": files, "labels": label_names})


def _read_with_ray(
    files: list[dict[str, Any]], source: str, out: str, ingest: IngestConfig, batch: str, progress_key: str | None
) -> None:
    """Decode ``files`` into new shards ``part-<batch>-*`` under ``out``; errors go to the spool.

    Each read task writes its own shards as it decodes (:mod:`vidgen_core.data.shard_writer`),
    so only a list of shard names comes back through Ray.
    """
    import ray
    import ray.data

    from vidgen_core.data.datasource import VideoClipDatasource, fault_injection_env
    from vidgen_core.ray_runtime import ensure_ray

    ensure_ray()  # joins the caller's Ray, else starts a local one
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    tasks = min(len(files), max(_TASKS_PER_CPU * cpus, -(-len(files) // _FILES_PER_TASK)))
    spool = storage.join(out, schema.ERRORS_SPOOL)
    env = {**storage.object_store_env(source, out), **fault_injection_env()}
    remote_args = {"runtime_env": {"env_vars": env}} if env else None
    ctx = ray.data.DataContext.get_current()
    reserving = ctx.op_resource_reservation_enabled
    # Ray Data's resource reservation holds read tasks back until it has measured their output in
    # the object store. Ours return only shard names, so all it did was idle CPUs: the second CPU
    # got its first file ~1 s late and each task waited ~0.1 s for a budget (2 CPUs, 32 tasks: 1.5-2.5 s
    # of 12 s idle per CPU; see bench/RESULTS.md, "Ingest").
    ctx.op_resource_reservation_enabled = False
    try:
        ds = ray.data.read_datasource(
            VideoClipDatasource(files, ingest, spool, out, batch, progress_key), override_num_blocks=tasks,
            ray_remote_args=remote_args,
        )
        written = ds.take_all()
    finally:
        ctx.op_resource_reservation_enabled = reserving
    log.debug("ingest: %d shards written by %d read tasks", len(written), tasks)


def _is_disk_full(exc: BaseException) -> bool:
    """ENOSPC anywhere in ``exc``'s chain, including inside a Ray task error (which carries it as text)."""
    while exc is not None:
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _collect_spool(out: str) -> tuple[list[dict[str, Any]], int]:
    """The error records the read tasks left, and how many worker processes died inside a file and were
    retried (see :mod:`vidgen_core.data.datasource`); the spool is removed."""
    fs, root = storage.resolve(storage.join(out, schema.ERRORS_SPOOL))
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    records, deaths = [], 0
    for fi in sorted(infos, key=lambda i: i.path):
        if fi.type != pafs.FileType.File:
            continue
        if fi.base_name.endswith(".json"):
            with fs.open_input_stream(fi.path) as f:
                records.append(json.loads(f.read()))
        elif fi.base_name.endswith(".deaths"):
            with fs.open_input_stream(fi.path) as f:
                deaths += int(f.read())
    if fs.get_file_info(root).type == pafs.FileType.Directory:
        fs.delete_dir(root)
    return records, deaths


def _clips_per_video(out: str, names: list[str]) -> Counter[str]:
    """Clip count per video id in the shards ``names`` (reads only the id column)."""
    counts: Counter[str] = Counter()
    for name in names:
        fs, path = storage.resolve(storage.join(out, name))
        counts.update(pq.read_table(path, filesystem=fs, columns=[schema.COL_VIDEO_ID]).column(0).to_pylist())
    return counts


def _ledger_rows(
    files: list[dict[str, Any]], counts: Counter[str], errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Ledger rows of the files read in this run; enforces the invariant (nothing disappears silently)."""
    error_of = {e["video_id"]: e for e in errors}
    rows = []
    for f in files:
        n = counts.get(f["video_id"], 0)
        err = error_of.get(f["video_id"])
        if err is None and n == 0:
            message = f"'{f['source']}' produced neither clips nor an error record"
            err = {"stage": "ingest", "error_type": "LostOutput", "message": message}
        rows.append(
            {
                **{k: f[k] for k in ("rel", "source", "video_id", "size", "mtime_ns", "split", "label", "label_name")},
                "num_clips": n,
                "stage": err["stage"] if err else "",
                "error_type": err["error_type"] if err else "",
                "message": err["message"] if err else "",
            }
        )
    return rows


def _manifest(
    source: str, ingest: IngestConfig, data: DataConfig, config_fp: str, ledger: list[dict[str, Any]],
    label_names: list[str], shards: list[str], ledger_name: str, seconds: float, worker_deaths: int,
) -> dict[str, Any]:
    per_split: Counter[str] = Counter()
    per_label: Counter[int] = Counter()
    for r in ledger:
        per_split[r["split"]] += r["num_clips"]
        per_label[r["label"]] += r["num_clips"]
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "fingerprint": _data_fingerprint(config_fp, ledger, label_names),
        "config_fingerprint": config_fp,
        "code_version": vidgen_core.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": storage.normalize(source),
        "config": {"ingest": ingest.model_dump(mode="json"), "data": data.model_dump(mode="json")},
        "num_inputs": len(ledger),
        "num_files_with_clips": sum(1 for r in ledger if r["num_clips"]),
        "num_files_with_errors": sum(1 for r in ledger if r["stage"]),
        "num_clips": sum(r["num_clips"] for r in ledger),
        "clips_per_split": {s: per_split.get(s, 0) for s in SPLITS},
        "clips_per_label": {str(k): v for k, v in sorted(per_label.items()) if v},
        "label_names": label_names,
        "clip_shape": [ingest.clip_len, ingest.size, ingest.size, 3],
        "shards": shards,
        "ledger": ledger_name,
        "ingest_seconds": round(seconds, 3),
        "worker_deaths": worker_deaths,  # decoding processes that died inside a file in this run (retried or skipped)
    }


def ingest_videos(
    source: str, out: str, ingest: IngestConfig, data: DataConfig, retry_failed: bool = False,
    progress_key: str | None = None,
) -> IngestResult:
    """Bring the clip shards under ``out`` up to date with the videos under ``source``.

    A complete earlier ingest with the same config is extended: only new or
    changed files (and, with ``retry_failed``, the files in its error list) are
    read; with nothing to read, nothing is written. Otherwise ``out`` is cleared
    (only files ingest writes) and everything is read. Ray is initialized
    locally if the caller has not done so. Files and frames done are counted on
    the progress board (:mod:`vidgen_core.progress`) under ``progress_key``.

    Raises:
        UserError: missing/empty source, a foreign non-empty ``out``, or no clips at all.
    """
    out = storage.normalize(out)
    config_fp = config_fingerprint(source, ingest, data)
    prev = state.load_previous(out, config_fp)
    rows, label_names = list_inputs(source, data, prev.manifest["label_names"] if prev else None)
    for r in rows:
        r["split"] = assign_split(r["video_id"], ingest.val_fraction, ingest.test_fraction)
    work = state.plan_work(rows, prev.ledger if prev else [], retry_failed)
    if prev is not None and work.nothing and label_names == prev.manifest["label_names"]:
        log.info("ingest: %s is up to date (fingerprint %s)", out, prev.manifest["fingerprint"][:12])
        return IngestResult(prev.manifest, 0, 0, 0, 0.0, up_to_date=True)
    keep: set[str] = set()
    if prev is not None:  # an incremental run keeps the earlier state readable until the new manifest
        keep = {schema.MANIFEST_NAME, schema.ERRORS_NAME, prev.manifest["ledger"], *prev.manifest["shards"]}
    state.clear_out(out, keep)

    batch = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    t0 = time.time()
    if work.todo:
        log.info("ingest: reading %d of %d files under %s", len(work.todo), len(rows), source)
        Reporter(progress_key).set(kind="ingest", files_total=len(work.todo), started=time.time())
        try:
            _read_with_ray(work.todo, source, out, ingest, batch, progress_key)
        except Exception as exc:
            # No manifest names this run's shards: remove them (and the spool), so the folder holds
            # no half-written file and an earlier complete state stays readable as it was.
            state.clear_out(out, keep)
            if _is_disk_full(exc):
                raise UserError(
                    f"ingest ran out of disk space writing shards under '{out}'; free some space (or set "
                    "--out elsewhere) and run again: this run's partial shards were removed"
                ) from None
            raise
    seconds = time.time() - t0
    errors, deaths = _collect_spool(out)
    if deaths:
        log.warning("ingest: %d worker process(es) died while decoding and their files were retried (the "
                    "manifest's worker_deaths); a file that keeps killing its worker is skipped with an error row", deaths)
    new_shards = [u.rsplit("/", 1)[1] for u in schema.list_shards(out) if f"{schema.SHARD_PREFIX}{batch}-" in u]
    counts = _clips_per_video(out, new_shards)
    old_shards, obsolete = state.drop_videos(out, prev.manifest["shards"] if prev else [], work.drop, batch)
    new_rows = _ledger_rows(work.todo, counts, errors)
    ledger = sorted(work.kept + new_rows, key=lambda r: r["rel"])
    ledger_name = f"{schema.LEDGER_PREFIX}{batch}.parquet"
    schema.write_ledger(out, ledger_name, ledger)
    schema.write_errors(out, [r for r in ledger if r["stage"]])
    if not any(r["num_clips"] for r in ledger):
        raise UserError(
            f"ingest made no clips from {len(rows)} files under '{source}'; see {storage.join(out, schema.ERRORS_NAME)}"
        )
    shards = sorted(old_shards + new_shards)
    manifest = _manifest(source, ingest, data, config_fp, ledger, label_names, shards, ledger_name, seconds, deaths)
    schema.write_manifest(out, manifest)  # last: its presence marks the shard set complete
    state.delete_names(out, obsolete + ([prev.manifest["ledger"]] if prev else []))
    result = IngestResult(
        manifest, len(work.todo), sum(counts.values()), sum(1 for r in new_rows if r["stage"]), seconds, False
    )
    log.info("ingest: %s", result.summary())
    return result


def run_ingest(
    source: str, out: str, ingest: IngestConfig, data: DataConfig, retry_failed: bool = False,
    progress_key: str | None = None,
) -> dict[str, Any]:
    """Turn the videos under ``source`` into clip shards under ``out``; returns the manifest.

    See :func:`ingest_videos` (which also says what this run did).
    """
    return ingest_videos(source, out, ingest, data, retry_failed, progress_key).manifest
