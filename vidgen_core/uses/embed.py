"""`vidgen embed`: videos -> VAE latent embeddings in one Parquet file.

An embedding is the log amplitude spectrum of a clip's VAE posterior mean
``encode(x).mean`` (vidgen_core/uses/features.py): ``D = Cz*H'*(W'//2+1)``
unit-norm floats that describe what the clip shows wherever in the frame it
is. Rows:

    kind="clip"   source, video_id, start_frame, start_s, label, label_name, embedding (D,)
    kind="video"  the same with start_frame/start_s null, num_clips, embedding = mean of its clips

The Parquet schema metadata (key ``vidgen.embeddings``) records the model
(URI as given, ``models:/NAME/VERSION``, weights digest) and the ingest
settings, so a file is never searched with another model's vectors.

Two paths, one output: a local loop for a few files, Ray Data for many
(``map_batches`` with the model loaded once per actor). Memory is bounded by
a batch of clips per worker plus one running sum per video on the driver,
whatever the input size; rows are streamed to a temporary file renamed into
place at the end (an error leaves nothing behind).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from vidgen_core.config import IngestConfig
from vidgen_core.errors import UserError
from vidgen_core.uses.features import CENTER_KEY, EMBEDDING_NAME, EMBEDDING_VERSION, center_doc, center_of, center_rows, log_spectrum
from vidgen_core.ray_runtime import ensure_ray
from vidgen_core.uses.loading import LoadedModel, ingest_config_of, load_for_use
from vidgen_core.uses.videos import VideoInput, iter_video_clips, list_videos

META_KEY = b"vidgen.embeddings"
RAY_MIN_VIDEOS = 16  # fewer videos than this: the local loop (no cluster start-up to pay for)


@torch.no_grad()
def encode_clips(vae: nn.Module, frames: np.ndarray, batch_size: int = 16, center: np.ndarray | None = None) -> np.ndarray:
    """Clip embeddings of uint8 clips: the log spectrum of their VAE posterior means.

    Args:
        vae: a VideoVAE (``encode(x).mean``, x float ``(B, 3, T, H, W)`` in [-1, 1]), eval mode.
        frames: uint8 ``(N, T, H, W, 3)``.
        batch_size: clips per forward pass.
        center: the VAE's embedding centre (``features.center_of(extra)``), float32 ``(D,)``;
            subtracted before the rows are normalised again. None: uncentred.

    Returns:
        float32 ``(N, D)``, unit rows, ``D = Cz * H' * (W'//2 + 1)`` (see ``features.log_spectrum``).
    """
    from vidgen_core.eval.inference import module_device
    from vidgen_core.models.vae import frames_to_video

    device = module_device(vae)
    out = []
    for i in range(0, len(frames), batch_size):
        z = vae.encode(frames_to_video(frames[i : i + batch_size], device)).mean
        out.append(log_spectrum(z).cpu().numpy())
    return center_rows(np.concatenate(out), center) if out else np.zeros((0, 0), np.float32)


def record_embedding_center(model_dir: str, shard_dir: str, max_clips: int = 256, batch_size: int = 16) -> None:
    """Write the mean embedding of up to ``max_clips`` train clips into the VAE's ``config.json``.

    The train_vae step calls it on the model it just trained, so every copy of the
    VAE (registered, logged, loaded by `embed`, `similar`, `compare` and the probe)
    centres its embeddings the same way.
    """
    from vidgen_core.data.readers import load_clips
    from vidgen_core.models.io import load_model, update_extra

    frames, _ = load_clips(shard_dir, "train", limit=max_clips)
    if not len(frames):
        raise ValueError(f"no train clips under {shard_dir} to centre the embeddings on")
    vae, _ = load_model(model_dir)
    update_extra(model_dir, {CENTER_KEY: center_doc(encode_clips(vae, frames, batch_size))})


def embedding_schema(dim: int, meta: dict[str, Any]) -> pa.Schema:
    """The Parquet schema of an embeddings file with ``D = dim`` and its metadata."""
    fields = [
        pa.field("kind", pa.string()),
        pa.field("source", pa.string()),
        pa.field("start_frame", pa.int64()),
        pa.field("start_s", pa.float64()),
        pa.field("label", pa.int64()),
        pa.field("label_name", pa.string()),
        pa.field("num_clips", pa.int64()),
        pa.field("embedding", pa.list_(pa.float32(), dim)),
    ]
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})


def model_meta(model: LoadedModel, cfg: IngestConfig, dim: int) -> dict[str, Any]:
    """What an embeddings file records about the model that made it."""
    return {
        "model_uri": model.uri, "model_version_uri": model.version_uri, "model_digest": model.digest,
        "dim": dim, "latent_shape": model.extra.get("latent_shape"), "ingest_config": cfg.model_dump(mode="json"),
        "embedding": f"{EMBEDDING_NAME} of the VAE posterior mean; video rows: mean over clips",
        "embedding_version": EMBEDDING_VERSION, "embedding_centered": center_of(model.extra) is not None,
    }


@dataclass
class EmbedSummary:
    """What an embed run did."""

    out: str
    videos: int = 0
    clips: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # one line per skipped file

    def line(self) -> str:
        rate = self.clips / self.seconds if self.seconds > 0 else 0.0
        skipped = f", {len(self.errors)} files skipped" if self.errors else ""
        return f"embedded {self.clips} clips of {self.videos} videos in {self.seconds:.1f}s ({rate:.1f} clips/s){skipped} → {self.out}"


class EmbeddingWriter:
    """Stream clip rows to a temporary Parquet file; on close add the pooled rows and rename into place."""

    def __init__(self, out: str, meta: dict[str, Any]) -> None:
        self.out = os.path.abspath(out)
        if os.path.isdir(self.out):
            raise UserError(f"output '{out}' is a folder; give a file name such as embeddings.parquet")
        if not os.path.isdir(os.path.dirname(self.out)):
            raise UserError(f"the folder of output '{out}' does not exist")
        self.meta = meta
        self.tmp = os.path.join(os.path.dirname(self.out), f".{os.path.basename(self.out)}.{uuid.uuid4().hex[:8]}.tmp")
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        # Per video: running sum of its clip embeddings, count, label: O(videos x D) on the driver.
        self._videos: dict[str, tuple[np.ndarray, int, int, str]] = {}
        self.clips = 0

    def add(self, source: str, label: int, label_name: str, start_frame: np.ndarray, start_s: np.ndarray,
            emb: np.ndarray) -> None:
        """Append the clips of one video: ``emb`` float32 ``(B, D)``, starts ``(B,)``."""
        if self._writer is None:
            self.meta["dim"] = int(emb.shape[1])
            self._schema = embedding_schema(int(emb.shape[1]), self.meta)
            self._writer = pq.ParquetWriter(self.tmp, self._schema)
        n = len(emb)
        self._writer.write_table(self._table(["clip"] * n, [source] * n, start_frame, start_s, [label] * n,
                                             [label_name] * n, [1] * n, emb))
        total, count, _, _ = self._videos.get(source, (np.zeros(emb.shape[1], np.float64), 0, label, label_name))
        self._videos[source] = (total + emb.sum(0, dtype=np.float64), count + n, label, label_name)
        self.clips += n

    def _table(self, kind, source, start_frame, start_s, label, label_name, num_clips, emb) -> pa.Table:
        flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1))
        columns = [kind, source, start_frame, start_s, label, label_name, num_clips,
                   pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])]
        return pa.Table.from_arrays([pa.array(c, type=f.type) if not isinstance(c, pa.Array) else c
                                     for c, f in zip(columns, self._schema)], schema=self._schema)

    def close(self) -> None:
        """Write one pooled row per video, then move the file into place (atomic on one filesystem)."""
        if self._writer is None:
            raise UserError("no clips to embed: every input failed (see the lines above)")
        items = sorted(self._videos.items())
        if items:
            pooled = np.stack([(t / c).astype(np.float32) for _, (t, c, _, _) in items])
            n = len(items)
            self._writer.write_table(self._table(
                ["video"] * n, [s for s, _ in items], [None] * n, [None] * n, [v[2] for _, v in items],
                [v[3] for _, v in items], [v[1] for _, v in items], pooled))
        self._writer.close()
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        Path(self.tmp).unlink(missing_ok=True)


def _progress(total: int | None, unit: str) -> Any:
    from tqdm import tqdm

    # disable=None: a bar on a terminal, silence in logs and tests.
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)


def embed(
    src: str, model_uri: str, out: str, *, tracking_uri: str | None = None, batch_size: int = 16,
    use_ray: bool | None = None, concurrency: int | None = None,
) -> EmbedSummary:
    """Embed every clip of ``src`` (video file, folder, or shard set) with a registered VAE.

    Args:
        use_ray: None: Ray Data for shard sets and for ``RAY_MIN_VIDEOS`` or more files, else local.
        concurrency: Ray actors, each holding one copy of the model (None: one per 2 CPUs, at least 1).

    Raises:
        UserError: missing/corrupt single video, unknown URI, a non-VAE model, a shard
            set cut differently from the model's clips, an unwritable output.
    """
    from vidgen_core.tracking.mlflow_setup import resolve_tracking_uri
    from vidgen_core.uses.videos import is_shard_set

    # Resolved once, absolute: Ray actors load the model from the same store.
    tracking_uri = resolve_tracking_uri(tracking_uri, "vidgen-work")
    model = load_for_use(model_uri, "vae", "embed", tracking_uri=tracking_uri)
    cfg = ingest_config_of(model)
    writer = EmbeddingWriter(out, model_meta(model, cfg, 0))
    summary = EmbedSummary(writer.out)
    t0 = time.perf_counter()
    try:
        if is_shard_set(src):
            rows = _ray_shard_rows(src, model, cfg, tracking_uri, batch_size, concurrency)
        else:
            videos, _ = list_videos(src)
            summary.videos = len(videos)
            ray_path = use_ray if use_ray is not None else len(videos) >= RAY_MIN_VIDEOS
            if ray_path:
                rows = _ray_video_rows(videos, model, cfg, tracking_uri, batch_size, concurrency, summary.errors)
            else:
                rows = _local_rows(videos, model, cfg, batch_size, single=len(videos) == 1, errors=summary.errors)
        with _progress(None, "clip") as bar:
            for source, label, name, start_frame, start_s, emb in rows:
                writer.add(source, label, name, start_frame, start_s, emb)
                bar.update(len(emb))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    summary.clips = writer.clips
    summary.videos = len(writer._videos)
    summary.seconds = time.perf_counter() - t0
    return summary


Rows = Iterator[tuple[str, int, str, np.ndarray, np.ndarray, np.ndarray]]


def _local_rows(videos: list[VideoInput], model: LoadedModel, cfg: IngestConfig, batch_size: int,
                single: bool, errors: list[str]) -> Rows:
    vae, center = model.python_model.vae, center_of(model.extra)
    for video in videos:
        try:
            for b in iter_video_clips(video, cfg, batch_size):
                yield video.source, video.label, video.label_name, b.start_frame, b.start_s, encode_clips(vae, b.frames, batch_size, center)
        except UserError as exc:
            if single:
                raise
            # In a folder one bad file must not sink the rest: it is reported, and counted.
            errors.append(str(exc))
            print(f"vidgen: skipped: {exc}", file=sys.stderr)


# ---------------------------------------------------------------- Ray Data path


class _Embedder:
    """Ray Data actor: the VAE loaded once (by exact version URI), then batches of clips -> embeddings."""

    def __init__(self, uri: str, tracking_uri: str | None, digest: str, batch_size: int) -> None:
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.model = load_for_use(uri, "vae", "embed", tracking_uri=tracking_uri)
        if self.model.digest != digest:  # an alias moved between the driver's load and this actor's
            raise RuntimeError(f"{uri} changed while embedding (digest {self.model.digest} != {digest})")
        self.batch_size = batch_size
        self.center = center_of(self.model.extra)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = batch.pop("frames")
        ok = batch["error"] == ""
        emb = np.zeros((len(frames), 0), np.float32)
        if ok.any():
            good = encode_clips(self.model.python_model.vae, np.asarray(frames[ok]), self.batch_size, self.center)
            emb = np.zeros((len(frames), good.shape[1]), np.float32)
            emb[ok] = good
        return {**batch, "embedding": emb}


def _decode_video(row: dict[str, Any], cfg_json: str, clip_shape: tuple[int, ...]) -> Iterator[dict[str, Any]]:
    """One video row -> its clip rows (``frames`` uint8 (T, H, W, 3)); a bad file -> one row with ``error``."""
    cfg = IngestConfig.model_validate_json(cfg_json)
    video = VideoInput(row["source"], int(row["label"]), row["label_name"])
    try:
        for b in iter_video_clips(video, cfg, batch_size=1):
            yield {**row, "start_frame": int(b.start_frame[0]), "start_s": float(b.start_s[0]),
                   "frames": b.frames[0], "error": ""}
    except UserError as exc:
        yield {**row, "start_frame": -1, "start_s": 0.0, "frames": np.zeros(clip_shape, np.uint8), "error": str(exc)}


def _actors(concurrency: int | None) -> int:
    import ray

    if concurrency is not None:
        return max(1, concurrency)
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // 2)


def _ray_video_rows(videos: list[VideoInput], model: LoadedModel, cfg: IngestConfig, tracking_uri: str | None,
                    batch_size: int, concurrency: int | None, errors: list[str]) -> Rows:
    import ray
    import ray.data

    ensure_ray(dashboard=False)  # no training here: no State API needed
    items = [{"source": v.source, "label": v.label, "label_name": v.label_name} for v in videos]
    shape = (cfg.clip_len, cfg.size, cfg.size, 3)
    ds = ray.data.from_items(items, override_num_blocks=len(items)).flat_map(
        _decode_video, fn_kwargs={"cfg_json": cfg.model_dump_json(), "clip_shape": shape})
    yield from _embed_dataset(ds, model, tracking_uri, batch_size, concurrency, errors)


def _ray_shard_rows(src: str, model: LoadedModel, cfg: IngestConfig, tracking_uri: str | None, batch_size: int,
                    concurrency: int | None) -> Rows:
    """Clips of a shard set, already cut: checked against the model's clip shape, then embedded."""
    import ray
    import ray.data

    from vidgen_core.data.readers import frames_to_numpy
    from vidgen_core.data.schema import read_manifest, shard_uris

    manifest = read_manifest(src)
    shape = tuple(manifest["clip_shape"])
    if shape != (cfg.clip_len, cfg.size, cfg.size, 3):
        raise UserError(f"shard set '{src}' holds clips of shape {list(shape)}, but {model.uri} reads "
                        f"{[cfg.clip_len, cfg.size, cfg.size, 3]}; embed the videos instead")
    ensure_ray(dashboard=False)  # no training here: no State API needed

    def decode(batch: pa.Table) -> dict[str, np.ndarray]:
        return {"source": batch.column("source").to_numpy(zero_copy_only=False),
                "label": batch.column("label").to_numpy(), "label_name": batch.column("label_name").to_numpy(zero_copy_only=False),
                "start_frame": batch.column("start_frame").to_numpy(), "start_s": batch.column("start_s").to_numpy(),
                "frames": frames_to_numpy(batch.column("frames"), shape), "error": np.full(batch.num_rows, "")}

    cols = ["source", "label", "label_name", "start_frame", "start_s", "frames"]
    # select_columns is pushed down into the scan (readers.read_split does the same).
    ds = ray.data.read_parquet(shard_uris(src, manifest)).select_columns(cols).map_batches(decode, batch_format="pyarrow")
    yield from _embed_dataset(ds, model, tracking_uri, batch_size, concurrency, [])


def _embed_dataset(ds: Any, model: LoadedModel, tracking_uri: str | None, batch_size: int,
                   concurrency: int | None, errors: list[str]) -> Rows:
    ds = ds.map_batches(
        _Embedder, fn_constructor_kwargs={"uri": model.version_uri, "tracking_uri": tracking_uri,
                                          "digest": model.digest, "batch_size": batch_size},
        batch_size=batch_size, concurrency=_actors(concurrency), num_cpus=1, batch_format="numpy",
    )
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        bad = batch["error"] != ""
        for message in dict.fromkeys(batch["error"][bad]):
            errors.append(str(message))
            print(f"vidgen: skipped: {message}", file=sys.stderr)
        # A batch may mix videos: hand each video's clips to the writer separately.
        for source in dict.fromkeys(batch["source"][~bad]):
            m = (batch["source"] == source) & ~bad
            i = int(np.argmax(m))
            yield (str(source), int(batch["label"][i]), str(batch["label_name"][i]), batch["start_frame"][m],
                   batch["start_s"][m], batch["embedding"][m])
