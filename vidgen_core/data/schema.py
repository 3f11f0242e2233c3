"""The clip-shard contract: column names, file names, manifest and errors I/O.

A shard directory holds::

    part-*.parquet    one row per clip (CLIP_COLUMNS); ``frames`` is a uint8 (T, H, W, 3) clip
                      stored as fixed-size binary (readers.frames_to_numpy; shape and dtype in the
                      manifest and in the Parquet schema metadata, see :func:`frame_layout`)
    _ledger-*.parquet one row per input file ingested (LEDGER_SCHEMA): what incremental runs compare against
    _errors.parquet   one row per file that failed or lost part of itself (ERROR_SCHEMA); may be empty
    _manifest.json    written last and atomically: its presence means "complete"

Bookkeeping names start with ``_``, the Parquet convention (``_metadata``,
``_SUCCESS``) that pyarrow.dataset, pandas and Ray Data skip: any of them
pointed at the folder reads the clips and nothing else.

Only the shards and the ledger the manifest names belong to the shard set;
anything else of ours (a run that was cut short) is removed by the next run.

Imports only pyarrow: readers in eval and serving use this without Ray.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidgen_core import storage
from vidgen_core.errors import UserError

# 3: bookkeeping files renamed with a leading "_", frame layout in the schema metadata.
SCHEMA_VERSION = 3

MANIFEST_NAME = "_manifest.json"
ERRORS_NAME = "_errors.parquet"
SHARD_PREFIX = "part-"
SHARD_SUFFIX = ".parquet"
LEDGER_PREFIX = "_ledger-"
# Per-file error records written by ingest workers, merged into _errors.parquet by the driver.
ERRORS_SPOOL = "_error_spool"
# Schema-level metadata key holding the frame layout (see frame_layout).
FRAMES_METADATA_KEY = "vidgen.frames"

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


def clip_schema(clip_shape: list[int] | tuple[int, ...]) -> pa.Schema:
    """Arrow schema of a shard whose clips are uint8 ``clip_shape`` = (T, H, W, 3).

    ``frames`` is ``fixed_size_binary(T*H*W*3)``, the pixels in C order: Parquet
    stores it as one byte string per clip, where a list column would cost a
    4-byte value and repetition levels per pixel (measured: 10x the write time
    and 15x the read time of the binary column for 128x128 clips).

    The layout is written twice so that a reader without vidgen can decode the
    pixels: on the ``frames`` field and in the schema metadata (``FRAMES_METADATA_KEY``).
    """
    layout = {"column": COL_FRAMES, "shape": list(clip_shape), "dtype": "uint8", "order": "C", "axes": "THWC"}
    return pa.schema(
        [
            (COL_CLIP_ID, pa.string()),
            (COL_VIDEO_ID, pa.string()),
            (COL_SOURCE, pa.string()),
            (COL_START_FRAME, pa.int64()),
            (COL_START_S, pa.float64()),
            (COL_FPS, pa.float64()),
            (COL_SPLIT, pa.string()),
            (COL_LABEL, pa.int64()),
            (COL_LABEL_NAME, pa.string()),
            pa.field(
                COL_FRAMES,
                pa.binary(math.prod(clip_shape)),
                metadata={"shape": json.dumps(list(clip_shape)), "dtype": "uint8"},
            ),
        ],
        metadata={FRAMES_METADATA_KEY: json.dumps(layout)},
    )


def frame_layout(schema: pa.Schema) -> tuple[tuple[int, ...], str]:
    """``(shape, dtype)`` of one clip's ``frames`` value, read from a shard's Arrow schema.

    Looks at the schema metadata first, then at the ``frames`` field's own metadata
    (some writers keep only one of them).

    Raises:
        ValueError: the schema carries no frame layout.
    """
    raw = (schema.metadata or {}).get(FRAMES_METADATA_KEY.encode())
    if raw is not None:
        layout = json.loads(raw)
        return tuple(layout["shape"]), layout["dtype"]
    meta = schema.field(COL_FRAMES).metadata or {}
    if b"shape" in meta:
        return tuple(json.loads(meta[b"shape"])), meta.get(b"dtype", b"uint8").decode()
    raise ValueError("this Parquet schema carries no frame layout (not a vidgen clip shard?)")


# How shards are written: a dictionary only for the string columns (trying one for the pixels
# costs more than decoding them), LZ4 because it is cheap next to decoding, and column statistics
# for every column but the pixels. Parquet drops a min/max longer than 4 KiB (every clip is far
# longer), yet Arrow compares every value to get it: 3.4 of the 21.7 ms that 64 128x128 clips took
# to write (bench/RESULTS.md, "Ingest").
PARQUET_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "lz4",
    "use_dictionary": [COL_CLIP_ID, COL_VIDEO_ID, COL_SOURCE, COL_SPLIT, COL_LABEL_NAME],
    "write_statistics": list(META_COLUMNS),
}

ERROR_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("video_id", pa.string()),
        ("stage", pa.string()),  # open | probe | decode | plan | ingest
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("num_clips", pa.int64()),  # clips kept from the file anyway (those before the damage)
    ]
)

LEDGER_SCHEMA = pa.schema(
    [
        ("rel", pa.string()),  # path relative to the source
        ("source", pa.string()),
        ("video_id", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("split", pa.string()),
        ("label", pa.int64()),
        ("label_name", pa.string()),
        ("num_clips", pa.int64()),
        ("stage", pa.string()),  # "" when the file was ingested whole
        ("error_type", pa.string()),
        ("message", pa.string()),
    ]
)


class ShardsNotFoundError(UserError, FileNotFoundError):
    """A shard directory without a manifest: missing, or ingest did not finish."""


def is_shard_name(name: str) -> bool:
    return name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)


def is_ours(name: str) -> bool:
    """Whether ingest writes files of this name into a shard directory."""
    return (
        name in (MANIFEST_NAME, ERRORS_NAME, ERRORS_SPOOL)
        or is_shard_name(name)
        or name.startswith(LEDGER_PREFIX)
        or ".tmp" in name
    )


def list_shards(out: str) -> list[str]:
    """Sorted URIs of the ``part-*.parquet`` files directly under ``out``."""
    fs, root = storage.resolve(out)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File and is_shard_name(i.base_name))
    return [storage.join(out, n) for n in names]


def write_manifest(out: str, manifest: dict[str, Any]) -> None:
    """Write ``out/_manifest.json`` atomically (temporary file + rename for local paths)."""
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


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def _write_table_atomic(uri: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes_atomic(uri, sink.getvalue().to_pybytes())


def write_errors(out: str, rows: list[dict[str, Any]]) -> None:
    """Write ``out/_errors.parquet`` (ERROR_SCHEMA), sorted by source; an empty table when no rows."""
    rows = sorted(rows, key=lambda r: (r["source"], r["stage"]))
    _write_table_atomic(storage.join(out, ERRORS_NAME), _table(rows, ERROR_SCHEMA))


def write_ledger(out: str, name: str, rows: list[dict[str, Any]]) -> None:
    """Write the ledger ``out/<name>`` (LEDGER_SCHEMA), sorted by relative path."""
    _write_table_atomic(storage.join(out, name), _table(sorted(rows, key=lambda r: r["rel"]), LEDGER_SCHEMA))


def read_ledger(out: str, name: str) -> list[dict[str, Any]]:
    """The rows of the ledger ``out/<name>``."""
    fs, path = storage.resolve(storage.join(out, name))
    return pq.read_table(path, filesystem=fs).to_pylist()


def read_errors(out: str) -> pa.Table:
    """``out/_errors.parquet`` as a table (ERROR_SCHEMA)."""
    fs, path = storage.resolve(storage.join(out, ERRORS_NAME))
    return pq.read_table(path, filesystem=fs)
