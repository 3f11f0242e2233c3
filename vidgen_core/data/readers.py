"""Read clip shards: as a Ray Dataset for training, or as numpy with plain pyarrow.

:func:`load_clips` never imports Ray (evaluation and model serving use it).
Ray Data stores the ``frames`` column as its tensor extension type, whose
storage is a (large) list of uint8 with the shape in the field metadata.
Without Ray the extension is unknown to pyarrow and the column reads as that
storage; with Ray imported it reads as an extension array. Both are handled
by flattening the storage and reshaping with the manifest's ``clip_shape``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vidgen_core import storage
from vidgen_core.data.plan import SPLITS
from vidgen_core.data.schema import COL_FRAMES, COL_LABEL, COL_SPLIT, read_manifest, shard_uris

if TYPE_CHECKING:
    import ray.data


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}', expected one of {SPLITS}")


def frames_to_numpy(column: pa.ChunkedArray | pa.Array, clip_shape: tuple[int, ...]) -> np.ndarray:
    """Decode a ``frames`` column into uint8 ``(N, *clip_shape)``, e.g. ``(N, T, H, W, 3)``."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    per_clip = int(np.prod(clip_shape))
    parts = []
    for chunk in chunks:
        if isinstance(chunk, pa.ExtensionArray):
            chunk = chunk.storage
        if chunk.null_count:
            raise ValueError("frames column has null clips")
        # flatten() honours slicing offsets (``.values`` would not).
        flat = chunk.flatten().to_numpy(zero_copy_only=False)
        if flat.size != len(chunk) * per_clip:
            raise ValueError(f"frames column does not hold {len(chunk)} clips of shape {tuple(clip_shape)}")
        parts.append(flat.astype(np.uint8, copy=False).reshape(len(chunk), *clip_shape))
    if not parts:
        return np.zeros((0, *clip_shape), dtype=np.uint8)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def load_clips(shard_dir: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clips of one split as numpy, in shard order, without Ray.

    Returns:
        ``(frames, labels)``: uint8 ``(N, T, H, W, 3)`` and int64 ``(N,)``, with
        ``N <= limit`` when ``limit`` is given.
    """
    _check_split(split)
    manifest = read_manifest(shard_dir)
    clip_shape = tuple(manifest["clip_shape"])
    frames: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    n = 0
    for uri in shard_uris(shard_dir, manifest):
        if limit is not None and n >= limit:
            break
        fs, path = storage.resolve(uri)
        table = pq.read_table(path, filesystem=fs, columns=[COL_FRAMES, COL_LABEL], filters=[(COL_SPLIT, "=", split)])
        if limit is not None:
            table = table.slice(0, limit - n)
        if table.num_rows == 0:
            continue
        frames.append(frames_to_numpy(table.column(COL_FRAMES), clip_shape))
        labels.append(table.column(COL_LABEL).to_numpy().astype(np.int64))
        n += table.num_rows
    if not frames:
        return np.zeros((0, *clip_shape), dtype=np.uint8), np.zeros((0,), dtype=np.int64)
    return np.concatenate(frames), np.concatenate(labels)


def read_split(shard_dir: str, split: str) -> ray.data.Dataset:
    """A lazy Ray Dataset of one split with columns ``frames`` (uint8 T, H, W, 3) and ``label`` (int64).

    The column selection and the split filter (an expression, not a Python
    function) are pushed down by Ray into the Parquet scan.
    """
    import ray.data
    from ray.data.expressions import col

    _check_split(split)
    uris = shard_uris(shard_dir)
    ds = ray.data.read_parquet(uris).select_columns([COL_FRAMES, COL_LABEL, COL_SPLIT])
    return ds.filter(expr=col(COL_SPLIT) == split).select_columns([COL_FRAMES, COL_LABEL])
