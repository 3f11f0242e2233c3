"""Resumable, incremental ingest: what an earlier run left in the output and what this run must do.

The state of a shard directory is its manifest, and only what the manifest
names (shards, ledger) belongs to it. A run that adds files writes new shards
and a new ledger beside the old ones, then swaps the manifest atomically, then
deletes what the old manifest named and the new one does not; a run cut short
anywhere leaves the old state readable, and its leftovers are removed by the
next run (:func:`clear_out`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidgen_core import storage
from vidgen_core.data import schema
from vidgen_core.errors import UserError


@dataclass(frozen=True)
class Previous:
    """A complete earlier ingest into the same output with the same config."""

    manifest: dict[str, Any]
    ledger: list[dict[str, Any]]


@dataclass
class Work:
    """What this run does: ``todo`` input rows to ingest, ``drop`` video ids whose clips leave the
    shards (changed, removed or retried files), ``kept`` ledger rows that stay as they are."""

    todo: list[dict[str, Any]] = field(default_factory=list)
    drop: set[str] = field(default_factory=set)
    kept: list[dict[str, Any]] = field(default_factory=list)

    @property
    def nothing(self) -> bool:
        return not self.todo and not self.drop


def load_previous(out: str, config_fp: str) -> Previous | None:
    """The earlier ingest in ``out`` if it is complete and made with config fingerprint ``config_fp``."""
    try:
        manifest = schema.read_manifest(out)
        present = {u.rsplit("/", 1)[1] for u in schema.list_shards(out)}
        if manifest.get("config_fingerprint") != config_fp or not set(manifest["shards"]) <= present:
            return None
        return Previous(manifest, schema.read_ledger(out, manifest["ledger"]))
    except (schema.ShardsNotFoundError, ValueError, KeyError, OSError):  # missing, old schema, unreadable
        return None


def plan_work(rows: list[dict[str, Any]], ledger: list[dict[str, Any]], retry_failed: bool) -> Work:
    """Compare the input listing with the ledger of the earlier run.

    New files are ingested; a file whose size or mtime changed, or (with
    ``retry_failed``) one in the error list, is ingested again after its old
    clips are dropped; a file that disappeared has its clips dropped.
    """
    work = Work()
    old_by_rel = {r["rel"]: r for r in ledger}
    for row in rows:
        old = old_by_rel.pop(row["rel"], None)
        if old is None:
            work.todo.append(row)
        elif (old["size"], old["mtime_ns"]) != (row["size"], row["mtime_ns"]) or (retry_failed and old["stage"]):
            work.todo.append(row)
            if old["num_clips"]:
                work.drop.add(old["video_id"])
        else:
            work.kept.append(old)
    work.drop.update(old["video_id"] for old in old_by_rel.values() if old["num_clips"])
    return work


def clear_out(out: str, keep: set[str]) -> None:
    """Delete every entry of ours in ``out`` except ``keep`` (the manifest first); create ``out``.

    Raises:
        UserError: ``out`` holds files ingest did not write (it never deletes those).
    """
    fs, root = storage.resolve(out)
    entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    foreign = [e.base_name for e in entries if not schema.is_ours(e.base_name)]
    if foreign:
        raise UserError(
            f"output '{out}' holds files ingest did not write (e.g. '{foreign[0]}'); use an empty or new directory"
        )
    # Manifest first: from here on the directory reads as incomplete.
    for e in sorted(entries, key=lambda e: e.base_name != schema.MANIFEST_NAME):
        if e.base_name in keep:
            continue
        if e.type == pafs.FileType.Directory:
            fs.delete_dir(e.path)
        else:
            fs.delete_file(e.path)
    fs.create_dir(root, recursive=True)


def drop_videos(out: str, shards: list[str], drop: set[str], batch: str) -> tuple[list[str], list[str]]:
    """Rewrite the shards that hold clips of ``drop`` without them.

    Returns:
        ``(shards, obsolete)``: the shard names that now make up the set, and the
        replaced ones (to delete once the new manifest is written).
    """
    if not drop:
        return list(shards), []
    import pyarrow as pa

    drop_arr = pa.array(sorted(drop))
    after, obsolete = [], []
    for i, name in enumerate(shards):
        fs, path = storage.resolve(storage.join(out, name))
        ids = pq.read_table(path, filesystem=fs, columns=[schema.COL_VIDEO_ID]).column(0)
        if not pc.any(pc.is_in(ids, value_set=drop_arr)).as_py():
            after.append(name)
            continue
        obsolete.append(name)
        table = pq.read_table(path, filesystem=fs)
        table = table.filter(pc.invert(pc.is_in(table.column(schema.COL_VIDEO_ID), value_set=drop_arr)))
        if table.num_rows:
            new = f"{schema.SHARD_PREFIX}{batch}-r{i:06d}{schema.SHARD_SUFFIX}"
            new_fs, new_path = storage.resolve(storage.join(out, new))
            pq.write_table(table, new_path, filesystem=new_fs, **schema.PARQUET_WRITE_OPTIONS)
            after.append(new)
    return sorted(after), obsolete


def delete_names(out: str, names: list[str]) -> None:
    """Best-effort removal of files the new manifest no longer names (leftovers are cleared next run)."""
    for name in names:
        fs, path = storage.resolve(storage.join(out, name))
        try:
            fs.delete_file(path)
        except OSError:
            pass
