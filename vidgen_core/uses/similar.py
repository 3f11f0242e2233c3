"""`vidgen similar` and `vidgen compare`: cosine similarity of VAE latent embeddings.

Nearest neighbours are exact brute force: one ``(N, D) @ (D,)`` product over
L2-normalised rows. On one CPU core that is ~0.1-0.5 s for N = 10^6 videos at
D = 1024 (the default's D is 160), and the matrix (4 GB in float32 at D = 1024)
must fit in memory: that is where this path stops. Beyond ~10^6 rows, or for many queries per second, put the
vectors in an approximate index (FAISS IVF-PQ / HNSW, or a vector database
such as Milvus or pgvector) built from the same Parquet file; the scores stay
cosine similarities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from vidgen_core import storage
from vidgen_core.errors import UserError
from vidgen_core.uses.embed import META_KEY, encode_clips
from vidgen_core.uses.features import EMBEDDING_NAME, EMBEDDING_VERSION, center_of
from vidgen_core.uses.loading import LoadedModel, ingest_config_of, load_for_use
from vidgen_core.uses.videos import video_clips


@dataclass(frozen=True)
class Embeddings:
    """The rows of an embeddings file of one kind: ``vectors`` float32 ``(N, D)`` and their metadata."""

    vectors: np.ndarray
    source: list[str]
    label_name: list[str]
    start_s: np.ndarray
    meta: dict[str, Any]


def read_embeddings(path: str, kind: str = "video") -> Embeddings:
    """The ``kind`` rows ("video" or "clip") of a file written by `vidgen embed`.

    Raises:
        UserError: missing file, or not a vidgen embeddings file (one line).
    """
    if not Path(path).is_file():
        raise UserError(f"embeddings file '{path}' does not exist; make one with `vidgen embed`")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise UserError(f"'{path}' is not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None or "embedding" not in table.column_names:
        raise UserError(f"'{path}' is not an embeddings file written by `vidgen embed`")
    table = table.filter(table.column("kind").to_numpy(zero_copy_only=False) == kind)
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    vectors = col.values.to_numpy(zero_copy_only=False).reshape(-1, dim) if len(col) else np.zeros((0, dim), np.float32)
    return Embeddings(vectors, table.column("source").to_pylist(), table.column("label_name").to_pylist(),
                      table.column("start_s").to_numpy(zero_copy_only=False), json.loads(raw))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero): ``(N, D) -> (N, D)``."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine_topk(gallery: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by cosine similarity: ``gallery (N, D)``, ``query (D,)`` -> (indices (k,), scores (k,)), best first."""
    scores = normalize_rows(gallery) @ normalize_rows(query[None])[0]
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, np.int64)
    top = top[np.argsort(-scores[top], kind="stable")]
    return top, scores[top]


@dataclass(frozen=True)
class VideoEmbedding:
    """One video embedded with a model: ``clips`` float32 ``(N, D)``, their start times, and the pooled mean ``(D,)``."""

    source: str
    clips: np.ndarray
    start_s: np.ndarray

    @property
    def pooled(self) -> np.ndarray:
        return self.clips.mean(0)


def embed_video(model: LoadedModel, path: str, batch_size: int = 16) -> VideoEmbedding:
    """Cut ``path`` as the model's training clips were cut and embed every clip."""
    clips = video_clips(path, ingest_config_of(model))
    return VideoEmbedding(storage.normalize(path), encode_clips(model.python_model.vae, clips.frames, batch_size, center_of(model.extra)),
                          clips.start_s)


def _check_same_model(emb: Embeddings, model: LoadedModel, path: str) -> None:
    version = emb.meta.get("embedding_version", 1)  # files written before versions were recorded hold version 1
    if version != EMBEDDING_VERSION:
        raise UserError(
            f"embeddings file '{path}' holds embedding version {version}, this vidgen makes version "
            f"{EMBEDDING_VERSION} ({EMBEDDING_NAME}); re-embed with `vidgen embed`"
        )
    if emb.meta.get("model_digest") != model.digest:
        raise UserError(
            f"embeddings file '{path}' was made by {emb.meta.get('model_version_uri')} "
            f"(weights {emb.meta.get('model_digest')}), not by {model.version_uri} (weights {model.digest}); "
            "re-embed with `vidgen embed` or pass the model that made it"
        )


def similar(query: str, embeddings: str, k: int = 5, *, model_uri: str | None = None,
            tracking_uri: str | None = None) -> list[tuple[float, str, str]]:
    """The ``k`` videos of ``embeddings`` nearest to the video ``query``: ``[(cosine, source, label_name)]``.

    A query already in the file uses its stored pooled row (and is not its own
    neighbour); any other video is embedded with ``model_uri`` (default: the
    model recorded in the file), which must be the model that made the file.
    """
    if k < 1:
        raise UserError(f"-k must be >= 1, got {k}")
    emb = read_embeddings(embeddings)
    if not len(emb.vectors):
        raise UserError(f"embeddings file '{embeddings}' has no video rows")
    source = storage.normalize(query)
    keep = np.ones(len(emb.source), dtype=bool)
    if source in emb.source and model_uri is None:
        i = emb.source.index(source)
        q, keep[i] = emb.vectors[i], False
    else:
        if not Path(query).is_file():
            raise UserError(f"query '{query}' is not a video file")
        model = load_for_use(model_uri or emb.meta["model_uri"], "vae", "similar", tracking_uri=tracking_uri)
        _check_same_model(emb, model, embeddings)
        q = embed_video(model, query).pooled
        keep &= np.array([s != source for s in emb.source])
    idx = np.flatnonzero(keep)
    top, scores = cosine_topk(emb.vectors[idx], q, k)
    return [(float(s), emb.source[idx[i]], emb.label_name[idx[i]]) for i, s in zip(top, scores)]


@dataclass(frozen=True)
class Comparison:
    """``score``: cosine of the pooled embeddings; ``timeline``: per aligned clip pair (t_a, t_b, cosine, best t_b, its cosine)."""

    score: float
    timeline: list[tuple[float, float, float, float, float]]


def compare(a: str, b: str, model_uri: str, *, tracking_uri: str | None = None) -> Comparison:
    """One similarity score between two videos, and a per-clip timeline.

    The timeline pairs clip ``i`` of A with clip ``i`` of B (same position in
    time) and also names the clip of B most similar to it, wherever it is.
    """
    model = load_for_use(model_uri, "vae", "compare", tracking_uri=tracking_uri)
    ea, eb = embed_video(model, a), embed_video(model, b)
    score = float(normalize_rows(ea.pooled[None])[0] @ normalize_rows(eb.pooled[None])[0])
    sims = normalize_rows(ea.clips) @ normalize_rows(eb.clips).T  # (Na, Nb)
    timeline = []
    for i in range(len(ea.clips)):
        j = int(np.argmax(sims[i]))
        aligned = float(sims[i, i]) if i < len(eb.clips) else float("nan")
        t_b = float(eb.start_s[i]) if i < len(eb.clips) else float("nan")
        timeline.append((float(ea.start_s[i]), t_b, aligned, float(eb.start_s[j]), float(sims[i, j])))
    return Comparison(score, timeline)
