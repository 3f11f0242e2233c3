"""Linear probes and retrieval on VAE latents vs raw pixels: is the latent space worth using?

A latent classifier is only interesting if it beats a pixel one at the same
size, and a similarity search only if it finds the right neighbours. So the
``train_probe`` step fits the same linear probe on the train split to:

    latent           the clip embedding: log spectrum of encode(x).mean     D = Cz*H'*(W'//2+1)
    pixel            x average-pooled to (3, T', h, h), flattened             3*T'*h*h ~ D (h = round(sqrt(D / 3T')))
    pixel_spectrum   the same log spectrum of x average-pooled to (3, T', H', W')

(3 colour channels rarely divide D, so the pixel size is the nearest one that
keeps the channels apart; every dimension is logged.) The pixel baseline is
the one the product promises to beat; the pixel spectrum tells whether the
VAE's latent, or the translation-invariant transform alone, does the work
(see vidgen_core/uses/features.py). It reports test accuracy and per-class
recall, and same-class retrieval (test clips as queries against the train
clips, so no clip finds its own video) with recall@k and mAP, for each. The
latent probe is saved as a vidgen model directory (``config.json`` +
``weights.safetensors`` + ``class_names.json``) that the register step turns
into ``vidgen-probe``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from vidgen_core.config import ProbeConfig
from vidgen_core.uses.features import EMBEDDING_NAME, EMBEDDING_VERSION, center_of, log_spectrum

PROBE_KIND = "probe"
CLASS_NAMES_FILE = "class_names.json"


class LinearProbe(nn.Module):
    """Standardise features, then one linear layer: ``(N, D) -> logits (N, C)``.

    The standardisation (train-split mean/std) lives in buffers so that the
    saved probe is applied exactly as it was trained.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_features, num_classes)
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)


def fit_probe(features: np.ndarray, labels: np.ndarray, num_classes: int, cfg: ProbeConfig) -> LinearProbe:
    """Multinomial logistic regression, full batch (features ``(N, D)``, labels ``(N,)`` in [0, C)).

    Full-batch Adam on standardised features: a convex problem small enough to
    solve exactly the same way on every run (seeded init, no data order).
    """
    torch.manual_seed(cfg.seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.long)
    probe = LinearProbe(x.shape[1], num_classes)
    probe.mean.copy_(x.mean(0))
    probe.std.copy_(x.std(0).clamp_min(1e-6))  # a constant feature must not divide by zero
    opt = torch.optim.Adam(probe.linear.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(probe(x), y).backward()
        opt.step()
    return probe.eval()


@torch.no_grad()
def predict_proba(probe: LinearProbe, features: np.ndarray) -> np.ndarray:
    """Class probabilities float32 ``(N, C)``."""
    return torch.softmax(probe(torch.as_tensor(features, dtype=torch.float32)), dim=-1).numpy()


# ---------------------------------------------------------------- metrics (pure functions)


def per_class_recall(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C,)``: fraction of class c's items predicted c (NaN for a class with no items)."""
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        m = labels == c
        if m.any():
            out[c] = float((pred[m] == c).mean())
    return out


def ranked_relevance(sim: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """Bool ``(Q, G)``: is the r-th most similar gallery item (by ``sim (Q, G)``) of the query's class?"""
    order = np.argsort(-sim, axis=1, kind="stable")
    return gallery_labels[order] == query_labels[:, None]


def recall_at_k(relevance: np.ndarray, k: int) -> float:
    """Fraction of queries with at least one relevant item in their top ``k`` (``relevance`` ranked, ``(Q, G)``)."""
    return float(relevance[:, :k].any(axis=1).mean())


def mean_average_precision(relevance: np.ndarray) -> float:
    """Mean over queries of AP = mean, over the relevant items, of precision at their rank.

    Queries with no relevant item in the gallery are left out (their AP is undefined).
    """
    hits = np.cumsum(relevance, axis=1)
    ranks = np.arange(1, relevance.shape[1] + 1)
    n_rel = relevance.sum(axis=1)
    ap = ((hits / ranks) * relevance).sum(axis=1)[n_rel > 0] / n_rel[n_rel > 0]
    return float(ap.mean()) if len(ap) else float("nan")


def retrieval_metrics(query: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
                      ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Cosine retrieval of same-class items: ``recall_at_{k}`` and ``map``."""
    from vidgen_core.uses.similar import normalize_rows

    rel = ranked_relevance(normalize_rows(query) @ normalize_rows(gallery).T, query_labels, gallery_labels)
    return {**{f"recall_at_{k}": recall_at_k(rel, k) for k in ks}, "map": mean_average_precision(rel)}


# ---------------------------------------------------------------- features


def _as_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, T, H, W, 3)`` -> float ``(N, 3, T, H, W)`` in [-1, 1]."""
    return torch.as_tensor(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def pixel_features(frames: np.ndarray, dim: int, latent_frames: int) -> np.ndarray:
    """Raw pixels average-pooled to about ``dim`` values: uint8 ``(N, T, H, W, 3)`` -> float32 ``(N, 3*T'*h*h)``.

    ``T' = latent_frames`` (the latent's length); ``h`` is the side that brings ``3*T'*h*h`` nearest ``dim``.
    """
    side = max(1, round(math.sqrt(dim / (3 * latent_frames))))
    return F.adaptive_avg_pool3d(_as_video(frames), (latent_frames, side, side)).flatten(1).numpy()


def pixel_spectrum_features(frames: np.ndarray, latent_shape: tuple[int, int, int, int]) -> np.ndarray:
    """The embedding's transform on pixels pooled to the latent grid: uint8 clips -> float32 ``(N, 3*H'*(W'//2+1))``."""
    _, tz, hz, wz = latent_shape
    return log_spectrum(F.adaptive_avg_pool3d(_as_video(frames), (tz, hz, wz))).numpy()


# ---------------------------------------------------------------- save / load


def save_probe(probe: LinearProbe, out_dir: str, class_names: list[str], extra: dict[str, Any]) -> str:
    """Write ``weights.safetensors``, ``class_names.json`` and, last, ``config.json`` (marks it complete)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in probe.state_dict().items()}
    save_file(state, str(out / "weights.safetensors.tmp"), metadata={"kind": PROBE_KIND})
    os.replace(out / "weights.safetensors.tmp", out / "weights.safetensors")
    (out / CLASS_NAMES_FILE).write_text(json.dumps(class_names))
    num_classes, num_features = probe.linear.weight.shape
    doc = {"format_version": 1, "kind": PROBE_KIND,
           "model_config": {"num_features": int(num_features), "num_classes": int(num_classes)},
           # A probe reads features made by this vidgen's encode_clips: their version travels with it.
           "extra": {"embedding_version": EMBEDDING_VERSION, **extra, "class_names": class_names}}
    (out / "config.json.tmp").write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(out / "config.json.tmp", out / "config.json")
    return str(out)


def load_probe(model_dir: str) -> tuple[LinearProbe, dict[str, Any]]:
    """Rebuild a saved probe from safetensors (no pickle): (probe in eval mode, config.json dict)."""
    doc = json.loads((Path(model_dir) / "config.json").read_text())
    if doc.get("kind") != PROBE_KIND:
        raise ValueError(f"{model_dir} holds a '{doc.get('kind')}' model, expected '{PROBE_KIND}'")
    mc = doc["model_config"]
    probe = LinearProbe(int(mc["num_features"]), int(mc["num_classes"]))
    probe.load_state_dict(load_file(str(Path(model_dir) / "weights.safetensors")), strict=True)
    return probe.eval(), doc


# ---------------------------------------------------------------- the workflow step's work


class ProbeSkipped(Exception):
    """The data cannot support a probe (unlabelled, one class, an empty split): the step reports why and goes on."""


def video_accuracy(probs: np.ndarray, labels: np.ndarray, video_ids: np.ndarray) -> float:
    """Accuracy per video (what `vidgen classify` answers): mean of its clips' probabilities, argmax.

    ``probs (N, C)``, ``labels (N,)``, ``video_ids (N,)`` -> fraction of videos right.
    """
    right = []
    for v in np.unique(video_ids):
        m = video_ids == v
        right.append(int(probs[m].mean(0).argmax()) == int(labels[m][0]))
    return float(np.mean(right)) if right else float("nan")


def load_split(shard_dir: str, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled clips of one split: uint8 frames ``(N, T, H, W, 3)``, labels ``(N,)``, video ids ``(N,)``."""
    import pyarrow.parquet as pq

    from vidgen_core import storage
    from vidgen_core.data.readers import frames_to_numpy
    from vidgen_core.data.schema import read_manifest, shard_uris

    manifest = read_manifest(shard_dir)
    shape = tuple(manifest["clip_shape"])
    frames, labels, vids, n = [], [], [], 0
    for uri in shard_uris(shard_dir, manifest):
        fs, path = storage.resolve(uri)
        t = pq.read_table(path, filesystem=fs, columns=["frames", "label", "video_id"],
                          filters=[("split", "=", split), ("label", ">=", 0)])
        t = t.slice(0, None if limit is None else max(0, limit - n))
        if t.num_rows:
            frames.append(frames_to_numpy(t.column("frames"), shape))
            labels.append(t.column("label").to_numpy().astype(np.int64))
            vids.append(np.asarray(t.column("video_id").to_pylist()))
            n += t.num_rows
    if not frames:
        return np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64), np.zeros(0, dtype=object)
    return np.concatenate(frames), np.concatenate(labels), np.concatenate(vids)


@dataclass(frozen=True)
class ProbeResult:
    metrics: dict[str, float]
    model_dir: str


def train_and_evaluate(shard_dir: str, vae_dir: str, out_dir: str, cfg: ProbeConfig) -> ProbeResult:
    """Latent and pixel probes + retrieval on a shard set; saves the latent probe under ``out_dir``.

    Returns metrics (``probe_{latent,pixel,pixel_spectrum}_accuracy`` per clip and ``_video_accuracy`` per video
    (mean of its clips' probabilities, as `vidgen classify`), ``probe_{...}_recall_<class>``,
    ``retrieval_{...}_{recall_at_1,recall_at_5,map}``, ``embed_clips_per_s``,
    ``probe_{...}_dim``, clip counts) and the probe's directory.
    """
    from vidgen_core.data.schema import read_manifest
    from vidgen_core.models.io import load_model
    from vidgen_core.uses.embed import encode_clips

    manifest = read_manifest(shard_dir)
    names = [str(n) for n in manifest.get("label_names") or []]
    if len(names) < 2:
        raise ProbeSkipped(f"a probe needs labelled clips of >= 2 classes; the shard set has {names}")
    vae, vae_doc = load_model(vae_dir)
    limit = cfg.max_clips_per_split
    # Unlabelled clips (label -1) teach a probe nothing: load_split leaves them out.
    train_x, train_y, _ = load_split(shard_dir, "train", limit)
    test_x, test_y, test_vid = load_split(shard_dir, "test", limit)
    if not len(train_x) or not len(test_x):
        raise ProbeSkipped(f"a probe needs labelled train and test clips; got {len(train_x)} and {len(test_x)}")

    t0 = time.perf_counter()
    center = center_of(vae_doc.get("extra") or {})  # as `embed` and the registered probe will use it
    lat_train = encode_clips(vae, train_x, cfg.batch_size, center)
    seconds = time.perf_counter() - t0
    lat_test = encode_clips(vae, test_x, cfg.batch_size, center)
    latent_shape = tuple(vae.latent_dims(*train_x.shape[1:4]))  # (Cz, T', H', W')
    dim, latent_frames = lat_train.shape[1], latent_shape[1]
    features = {
        "latent": (lat_train, lat_test),
        "pixel": (pixel_features(train_x, dim, latent_frames), pixel_features(test_x, dim, latent_frames)),
        "pixel_spectrum": (pixel_spectrum_features(train_x, latent_shape), pixel_spectrum_features(test_x, latent_shape)),
    }

    c = len(names)
    metrics: dict[str, float] = {
        "probe_train_clips": float(len(train_x)), "probe_test_clips": float(len(test_x)),
        "embed_clips_per_s": len(train_x) / seconds if seconds > 0 else float("nan"),
        **{f"probe_{space}_dim": float(tr.shape[1]) for space, (tr, _) in features.items()},
    }
    probes = {}
    for space, (tr, te) in features.items():
        probe = fit_probe(tr, train_y, c, cfg)
        probs = predict_proba(probe, te)
        pred = probs.argmax(1)
        metrics[f"probe_{space}_accuracy"] = float((pred == test_y).mean())
        metrics[f"probe_{space}_video_accuracy"] = video_accuracy(probs, test_y, test_vid)
        for name, r in zip(names, per_class_recall(pred, test_y, c)):
            if not math.isnan(r):
                metrics[f"probe_{space}_recall_{name}"] = float(r)
        for key, value in retrieval_metrics(te, test_y, tr, train_y).items():
            metrics[f"retrieval_{space}_{key}"] = value
        probes[space] = probe

    ingest = (manifest.get("config") or {}).get("ingest") or {}
    extra = {"clip_len": int(train_x.shape[1]), "size": int(train_x.shape[2]), "ingest": ingest,
             "vae_dir": str(vae_dir), "latent_shape": list(latent_shape), "feature": EMBEDDING_NAME, "embedding_centered": center is not None,
             "vae_kind": vae_doc.get("kind"), "test_accuracy": metrics["probe_latent_accuracy"]}
    model_dir = save_probe(probes["latent"], os.path.join(out_dir, "model"), names, extra)
    return ProbeResult(metrics, model_dir)
