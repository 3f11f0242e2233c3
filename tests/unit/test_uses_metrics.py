"""Probe and retrieval metrics against hand-computed values; grid, PNG and cosine top-k helpers."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from vidgen_core.config import ProbeConfig
from vidgen_core.uses.generate import grid, write_png
from vidgen_core.uses.probe import (
    fit_probe,
    mean_average_precision,
    per_class_recall,
    pixel_features,
    predict_proba,
    ranked_relevance,
    recall_at_k,
    retrieval_metrics,
    video_accuracy,
)
from vidgen_core.uses.similar import cosine_topk


def test_recall_at_k_by_hand() -> None:
    rel = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=bool)
    assert recall_at_k(rel, 1) == pytest.approx(1 / 4)  # only query 3's first hit
    assert recall_at_k(rel, 2) == pytest.approx(2 / 4)
    assert recall_at_k(rel, 3) == pytest.approx(3 / 4)  # query 4 has nothing relevant


def test_map_by_hand() -> None:
    # Query 1: relevant at ranks 1 and 3 -> AP = (1/1 + 2/3) / 2 = 5/6.
    # Query 2: relevant at rank 2 -> AP = 1/2. Query 3: none -> left out.
    rel = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    assert mean_average_precision(rel) == pytest.approx((5 / 6 + 1 / 2) / 2)


def test_ranked_relevance_orders_by_similarity() -> None:
    sim = np.array([[0.1, 0.9, 0.5]])
    rel = ranked_relevance(sim, np.array([1]), np.array([0, 1, 1]))
    assert rel.tolist() == [[True, True, False]]  # gallery order 1 (label 1), 2 (1), 0 (0)


def test_retrieval_metrics_end_to_end() -> None:
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    g_labels = np.array([0, 1, 0])
    query = np.array([[1.0, 0.05], [0.1, 1.0]])
    q_labels = np.array([0, 1])
    m = retrieval_metrics(query, q_labels, gallery, g_labels, ks=(1,))
    assert m["recall_at_1"] == 1.0
    # Query 0: ranks 0, 2, 1 -> relevant at 1, 2 -> AP 1. Query 1: gallery 1 first -> AP 1.
    assert m["map"] == pytest.approx(1.0)


def test_per_class_recall() -> None:
    pred, labels = np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 2])
    r = per_class_recall(pred, labels, 4)
    assert r[:3].tolist() == [1.0, 0.5, 1.0] and np.isnan(r[3])


def test_linear_probe_learns_separable_classes() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4
    labels = np.repeat(np.arange(3), 20)
    x = centres[labels] + rng.normal(size=(60, 16))
    probe = fit_probe(x, labels, 3, ProbeConfig(steps=200))
    probs = predict_proba(probe, x)
    assert probs.shape == (60, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == labels).mean() == 1.0


def test_pixel_features_pool_to_about_the_embedding_size() -> None:
    frames = np.zeros((2, 8, 32, 32, 3), np.uint8)
    assert pixel_features(frames, 1024, 4).shape == (2, 972)  # 3 * 4 * 9 * 9
    f = pixel_features(frames, 160, 4)  # the default's embedding: 3 * 4 * 4 * 4
    assert f.shape == (2, 192)
    assert np.allclose(f, -1.0)


def test_cosine_topk_best_first() -> None:
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    idx, scores = cosine_topk(gallery, np.array([1.0, 0.1]), 2)
    assert idx.tolist() == [0, 2]
    assert scores[0] == pytest.approx(1 / np.sqrt(1.01))


def test_grid_tiles_and_keeps_even_sides() -> None:
    videos = np.stack([np.full((2, 5, 5, 3), i * 10, np.uint8) for i in range(3)])
    g = grid(videos, pad=1)  # 2 cols x 2 rows: 11 x 11 -> 12 x 12
    assert g.shape == (2, 12, 12, 3)
    assert g[0, 0, 0, 0] == 0 and g[0, 0, 6, 0] == 10 and g[0, 6, 0, 0] == 20 and g[0, 6, 6, 0] == 0


def test_png_is_lossless(tmp_path) -> None:
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", img)
    data = (tmp_path / "a.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    idat = data.index(b"IDAT")
    n = int.from_bytes(data[idat - 4 : idat], "big")
    raw = np.frombuffer(zlib.decompress(data[idat + 4 : idat + 4 + n]), np.uint8).reshape(5, 1 + 7 * 3)
    assert np.array_equal(raw[:, 1:].reshape(5, 7, 3), img)


def test_video_accuracy_pools_clip_probabilities() -> None:
    probs = np.array([[0.6, 0.4], [0.1, 0.9], [0.2, 0.8], [0.7, 0.3]])
    labels = np.array([1, 1, 0, 0])
    vids = np.array(["a", "a", "b", "b"])
    # a: mean (0.35, 0.65) -> 1, right; b: mean (0.45, 0.55) -> 1, wrong.
    assert video_accuracy(probs, labels, vids) == 0.5
