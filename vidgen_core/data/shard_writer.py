"""One ingest read task's clips -> Parquet shards, a block at a time (memory: one block, whatever the video's length).

Ray Data's ``write_parquet`` gathers every block of a task before it writes
(``ParquetDatasink.write`` lists them), so a task reading one two-hour video
would hold all of its clips at once. Here the read task writes its own shards
as it decodes: each block goes straight into the open shard as a row group, and
a shard is closed at ``rows_per_shard`` rows.

Names are ``part-<batch>-<task>-<k>.parquet``: deterministic, so a retried task
writes the same names again. A local shard is written under a ``.tmp`` name and
renamed when complete; on an object store an upload is invisible until it
completes. A retry first deletes what an earlier attempt of the same task wrote
(it may have written more shards than this attempt will, e.g. with the clips of
a file that this attempt skips).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidgen_core import storage
from vidgen_core.data import schema


def task_prefix(batch: str, task_index: int) -> str:
    """Name prefix of the shards of one read task of one ingest run."""
    return f"{schema.SHARD_PREFIX}{batch}-{task_index:06d}-"


class ShardWriter:
    """Streams Arrow tables of one clip schema into shards ``<prefix><k:04d>.parquet`` under ``out``."""

    def __init__(self, out: str, prefix: str, rows_per_shard: int, table_schema: pa.Schema) -> None:
        self._fs, self._root = storage.resolve(out)
        self._local = isinstance(self._fs, pafs.LocalFileSystem)
        self._prefix, self._rows_per_shard, self._schema = prefix, rows_per_shard, table_schema
        self._writer: pq.ParquetWriter | None = None
        self._stream = None
        self._path = self._final = ""
        self._rows = 0
        self.written: list[tuple[str, int]] = []  # (shard name, rows) of the shards closed so far

    def remove_earlier_attempt(self) -> None:
        """Delete shards (and temporary files) an earlier attempt of this task left under ``out``."""
        infos = self._fs.get_file_info(pafs.FileSelector(self._root, allow_not_found=True))
        for info in infos:
            if info.type == pafs.FileType.File and info.base_name.startswith(self._prefix):
                self._fs.delete_file(info.path)

    def add(self, table: pa.Table) -> None:
        """Append ``table``'s rows, closing a shard whenever it reaches ``rows_per_shard`` rows."""
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._open()
            take = min(table.num_rows - offset, self._rows_per_shard - self._rows)
            self._writer.write_table(table.slice(offset, take))
            self._rows += take
            offset += take
            if self._rows == self._rows_per_shard:
                self._close()

    def finish(self) -> list[tuple[str, int]]:
        """Close the last shard; returns every shard written, as ``(name, rows)``."""
        if self._writer is not None:
            self._close()
        return self.written

    def _open(self) -> None:
        name = f"{self._prefix}{len(self.written):04d}{schema.SHARD_SUFFIX}"
        self._final = f"{self._root}/{name}"
        self._path = f"{self._final}.tmp" if self._local else self._final
        self._stream = self._fs.open_output_stream(self._path)
        self._writer = pq.ParquetWriter(self._stream, self._schema, **schema.PARQUET_WRITE_OPTIONS)

    def _close(self) -> None:
        assert self._writer is not None and self._stream is not None
        self._writer.close()
        self._stream.close()
        if self._local:
            self._fs.move(self._path, self._final)
        self.written.append((self._final.rsplit("/", 1)[1], self._rows))
        self._writer, self._stream, self._rows = None, None, 0
