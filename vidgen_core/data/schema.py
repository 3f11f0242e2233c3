"""The clip-shard contract: column names, file names, manifest and errors I/O.

A shard directory holds::

    part-*.parquet   one row per clip (CLIP_COLUMNS); ``frames`` is a uint8 (T, H, W, 3) tensor
    errors.parquet   one row per failure (ERROR_SCHEMA); always present, may be empty
    manifest.json    written last and atomically: its presence means "complete"

Imports only pyarrow: readers in eval and serving use this without Ray.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidgen_core import storage
from vidgen_core.errors import UserError

SCHEMA_VERSION = 1

MANIFEST_NAME = "manifest.json"
ERRORS_NAME = "errors.parquet"
SHARD_PREFIX = "part-"
SHARD_SUFFIX = ".parquet"
# Per-file error records written by ingest workers, merged into errors.parquet by the driver.
ERRORS_SPOOL = "_errors"

COL_CLIP_ID = "clip_id"
COL_VIDEO_ID = "video_id"
COL_SOURCE = "source"
COL_START_FRAME = "start_frame"
COL_START_S = "start_s"
COL_FPS = "fps"
COL_SPLIT = "split"
COL_LABEL = "label"
COL_LABEL_NAME = "label_name"
COL_FRAMES = "frames"

CLIP_COLUMNS = (
    COL_CLIP_ID,
    COL_VIDEO_ID,
    COL_SOURCE,
    COL_START_FRAME,
    COL_START_S,
    COL_FPS,
    COL_SPLIT,
    COL_LABEL,
    COL_LABEL_NAME,
    COL_FRAMES,
)
# Everything but the pixels: cheap to scan for counts.
META_COLUMNS = CLIP_COLUMNS[:-1]

ERROR_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("video_id", pa.string()),
        ("stage", pa.string()),  # open | probe | decode | plan | ingest
        ("error_type", pa.string()),
        ("message", pa.string()),
    ]
)


class ShardsNotFoundError(UserError, FileNotFoundError):
    """A shard directory without a manifest: missing, or ingest did not finish."""


def is_shard_name(name: str) -> bool:
    return name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)


def list_shards(out: str) -> list[str]:
    """Sorted URIs of the ``part-*.parquet`` files directly under ``out``."""
    fs, root = storage.resolve(out)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File and is_shard_name(i.base_name))
    return [storage.join(out, n) for n in names]


def write_manifest(out: str, manifest: dict[str, Any]) -> None:
    """Write ``out/manifest.json`` atomically (temporary file + rename for local paths)."""
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    storage.write_bytes_atomic(storage.join(out, MANIFEST_NAME), data)


def read_manifest(out: str) -> dict[str, Any]:
    """The manifest of a complete shard set.

    Raises:
        ShardsNotFoundError: no manifest (wrong path or an unfinished ingest).
    """
    uri = storage.join(out, MANIFEST_NAME)
    try:
        raw = storage.read_bytes(uri)
    except FileNotFoundError:
        raise ShardsNotFoundError(
            f"no {MANIFEST_NAME} in '{out}': not a complete clip-shard directory (run ingest first)"
        ) from None
    manifest = json.loads(raw)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ShardsNotFoundError(
            f"shards in '{out}' have schema version {version}, this code reads {SCHEMA_VERSION}: re-run ingest"
        )
    return manifest


def shard_uris(out: str, manifest: dict[str, Any] | None = None) -> list[str]:
    """URIs of the shards a manifest lists (only those: stray files are ignored)."""
    manifest = manifest if manifest is not None else read_manifest(out)
    return [storage.join(out, name) for name in manifest["shards"]]


def write_errors(out: str, rows: list[dict[str, Any]]) -> None:
    """Write ``out/errors.parquet`` (ERROR_SCHEMA), sorted by source; an empty table when no rows."""
    rows = sorted(rows, key=lambda r: (r["source"], r["stage"]))
    table = pa.Table.from_pylist([{k: r.get(k, "") for k in ERROR_SCHEMA.names} for r in rows], schema=ERROR_SCHEMA)
    fs, path = storage.resolve(storage.join(out, ERRORS_NAME))
    pq.write_table(table, path, filesystem=fs)


def read_errors(out: str) -> pa.Table:
    """``out/errors.parquet`` as a table (ERROR_SCHEMA)."""
    fs, path = storage.resolve(storage.join(out, ERRORS_NAME))
    return pq.read_table(path, filesystem=fs)
