"""Read clip shards: as a Ray Dataset for training, or as numpy with plain pyarrow.

:func:`load_clips` never imports Ray (evaluation and model serving use it).
Shards store ``frames`` as ``fixed_size_binary(T*H*W*3)`` (see
``schema.clip_schema``); :func:`frames_to_numpy` views those bytes as uint8
``(N, T, H, W, 3)`` with the manifest's ``clip_shape``. It also reads a list
column (Ray's tensor extension type, or its storage when Ray is not imported)
by flattening it, so clips Ray Data has turned into tensors read the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vidgen_core import storage
from vidgen_core.data.plan import SPLITS
from vidgen_core.data.schema import COL_FRAMES, COL_LABEL, COL_SPLIT, COL_VIDEO_ID, read_manifest, shard_uris

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
        if pa.types.is_fixed_size_binary(chunk.type):
            if chunk.type.byte_width != per_clip:
                raise ValueError(
                    f"frames column holds {chunk.type.byte_width}-byte clips, not {tuple(clip_shape)} uint8"
                )
            # A view of the data buffer; a sliced array starts ``offset`` clips in.
            flat = np.frombuffer(chunk.buffers()[1], dtype=np.uint8, count=len(chunk) * per_clip,
                                 offset=chunk.offset * per_clip)
        else:
            # flatten() honours slicing offsets (``.values`` would not).
            flat = chunk.flatten().to_numpy(zero_copy_only=False)
        if flat.size != len(chunk) * per_clip:
            raise ValueError(f"frames column does not hold {len(chunk)} clips of shape {tuple(clip_shape)}")
        parts.append(flat.astype(np.uint8, copy=False).reshape(len(chunk), *clip_shape))
    if not parts:
        return np.zeros((0, *clip_shape), dtype=np.uint8)
    # One writable array the caller owns (views of Arrow buffers are read-only).
    return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


def _split_table(uri: str, split: str, columns: list[str]) -> pa.Table:
    """The rows of ``split`` in one shard file, only ``columns``, in file order."""
    fs, path = storage.resolve(uri)
    return pq.read_table(path, filesystem=fs, columns=columns, filters=[(COL_SPLIT, "=", split)])


def _clips_of(table: pa.Table, clip_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A table's ``frames`` and ``label`` columns as uint8 ``(n, *clip_shape)`` and int64 ``(n,)``."""
    return frames_to_numpy(table.column(COL_FRAMES), clip_shape), table.column(COL_LABEL).to_numpy().astype(np.int64)


def _split_tables(shard_dir: str, split: str, columns: list[str]) -> Iterator[tuple[tuple[int, ...], pa.Table]]:
    """``(clip_shape, table)`` for every shard holding rows of ``split``, in shard order."""
    _check_split(split)
    manifest = read_manifest(shard_dir)
    clip_shape = tuple(manifest["clip_shape"])
    for uri in shard_uris(shard_dir, manifest):
        table = _split_table(uri, split, columns)
        if table.num_rows:
            yield clip_shape, table


def iter_shard_clips(shard_dir: str, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(frames, labels)`` of one split, one shard at a time, in shard order, without Ray.

    Yields uint8 ``(n, T, H, W, 3)`` and int64 ``(n,)`` for every shard holding
    at least one clip of ``split``.
    """
    for clip_shape, table in _split_tables(shard_dir, split, [COL_FRAMES, COL_LABEL]):
        yield _clips_of(table, clip_shape)


def load_clips(shard_dir: str, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clips of one split as numpy, in shard order, without Ray.

    Only the clips kept are decoded: with ``limit``, each shard's rows are cut
    before their frames are turned into arrays.

    Returns:
        ``(frames, labels)``: uint8 ``(N, T, H, W, 3)`` and int64 ``(N,)``, with
        ``N <= limit`` when ``limit`` is given.
    """
    if limit is not None and limit <= 0:
        return _no_clips(shard_dir)
    frames: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    n = 0
    for clip_shape, table in _split_tables(shard_dir, split, [COL_FRAMES, COL_LABEL]):
        if limit is not None:
            table = table.slice(0, limit - n)
        shard_frames, shard_labels = _clips_of(table, clip_shape)
        frames.append(shard_frames)
        labels.append(shard_labels)
        n += len(shard_frames)
        if limit is not None and n >= limit:
            break
    if not frames:
        return _no_clips(shard_dir)
    return np.concatenate(frames), np.concatenate(labels)


def clips_across_videos(shard_dir: str, split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` clips of one split drawn round-robin over its videos, without Ray.

    The first clip of every video (in shard order), then the second of every
    video, and so on: a preview of 4 clips shows 4 videos where :func:`load_clips`
    would show 4 windows of the first one. Only the chosen clips' frames are
    decoded, one shard at a time.

    Returns:
        ``(frames, labels)``: uint8 ``(N, T, H, W, 3)`` and int64 ``(N,)``, ``N <= limit``.
    """
    _check_split(split)
    manifest = read_manifest(shard_dir)
    uris = shard_uris(shard_dir, manifest)
    first_seen: dict[str, int] = {}  # video id -> its order of appearance
    seen_clips: dict[str, int] = {}  # video id -> its clips so far (a video may span shards)
    candidates: list[tuple[int, int, int, int]] = []  # (index within its video, video order, shard, row)
    for shard, uri in enumerate(uris):
        for row, vid in enumerate(_split_table(uri, split, [COL_VIDEO_ID]).column(COL_VIDEO_ID).to_pylist()):
            order = first_seen.setdefault(vid, len(first_seen))
            index = seen_clips.get(vid, 0)
            seen_clips[vid] = index + 1
            candidates.append((index, order, shard, row))
    chosen = sorted(candidates)[: max(limit, 0)]
    if not chosen:
        return _no_clips(shard_dir)
    clip_shape = tuple(manifest["clip_shape"])
    picked: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
    for shard in sorted({c[2] for c in chosen}):
        rows = [c[3] for c in chosen if c[2] == shard]
        table = _split_table(uris[shard], split, [COL_FRAMES, COL_LABEL]).take(pa.array(rows))
        frames, labels = _clips_of(table, clip_shape)
        for i, row in enumerate(rows):
            picked[(shard, row)] = (frames[i], int(labels[i]))
    ordered = [picked[(c[2], c[3])] for c in chosen]
    return np.stack([f for f, _ in ordered]), np.array([lab for _, lab in ordered], dtype=np.int64)


def _no_clips(shard_dir: str) -> tuple[np.ndarray, np.ndarray]:
    clip_shape = tuple(read_manifest(shard_dir)["clip_shape"])
    return np.zeros((0, *clip_shape), dtype=np.uint8), np.zeros((0,), dtype=np.int64)


def _decode_batch(batch: pa.Table, clip_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    frames, labels = _clips_of(batch, clip_shape)
    return {COL_FRAMES: frames, COL_LABEL: labels}


def read_split(shard_dir: str, split: str) -> ray.data.Dataset:
    """A lazy Ray Dataset of one split with columns ``frames`` (uint8 T, H, W, 3) and ``label`` (int64).

    The column selection and the split filter (an expression, not a Python
    function) are pushed down by Ray into the Parquet scan; the stored bytes
    become uint8 tensors in a map fused with that scan.
    """
    import ray.data
    from ray.data.expressions import col

    _check_split(split)
    manifest = read_manifest(shard_dir)
    uris = shard_uris(shard_dir, manifest)
    ds = ray.data.read_parquet(uris).select_columns([COL_FRAMES, COL_LABEL, COL_SPLIT])
    ds = ds.filter(expr=col(COL_SPLIT) == split).select_columns([COL_FRAMES, COL_LABEL])
    return ds.map_batches(
        _decode_batch, batch_format="pyarrow", fn_kwargs={"clip_shape": tuple(manifest["clip_shape"])},
        zero_copy_batch=True,
    )


def read_split_in_memory(shard_dir: str, split: str, seed: int = 0) -> ray.data.Dataset:
    """A small split read here with pyarrow into the object store: one block per shard, in a seeded order.

    Columns ``frames`` (uint8 tensors (T, H, W, 3)) and ``label`` (int64), as
    :func:`read_split` gives them. For splits that fit in memory: it skips Ray
    Data's read tasks (6.3 s of worker start-up for 37 clips on 2 CPUs) and
    every later epoch's re-read of the Parquet files.
    """
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    blocks = [pa.table({COL_FRAMES: ArrowTensorArray.from_numpy(frames), COL_LABEL: pa.array(labels)})
              for frames, labels in iter_shard_clips(shard_dir, split)]
    order = np.random.default_rng(seed).permutation(len(blocks))
    return ray.data.from_arrow([blocks[i] for i in order])
