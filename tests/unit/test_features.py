"""The clip embedding (vidgen_core/uses/features.py): what it keeps and what it must ignore."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidgen_core.uses.features import CENTER_KEY, EMBEDDING_VERSION, center_doc, center_of, center_rows, log_spectrum, spectrum_dim
from vidgen_core.video.synth import shape_mask


def _clip(shape: str, cx: float, cy: float, r: float, colour: tuple[float, float, float], size: int = 32) -> torch.Tensor:
    """One object on a dark background, 4 frames: ``(1, 3, 4, size, size)`` in [-1, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    mask = torch.as_tensor(shape_mask(shape, cx, cy, r, xx[:1], yy[:, :1]))
    x = torch.full((1, 3, 4, size, size), -0.9)
    for c, v in enumerate(colour):
        x[0, c, :, mask] = v
    return x


def test_shape_and_unit_norm() -> None:
    z = torch.randn(3, 4, 2, 8, 8)
    e = log_spectrum(z)
    assert e.shape == (3, spectrum_dim(4, 8, 8)) == (3, 160)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(log_spectrum(torch.full((1, 4, 2, 8, 8), 0.3)), torch.zeros(1, 160))  # flat: no structure
    with pytest.raises(ValueError, match="expected"):
        log_spectrum(torch.randn(4, 8, 8))


def test_invariant_to_position_motion_and_background() -> None:
    z = torch.randn(2, 4, 3, 8, 8)
    moved = torch.roll(z, shifts=(3, -2), dims=(-2, -1))  # a circular shift: exact invariance
    assert torch.allclose(log_spectrum(z), log_spectrum(moved), atol=1e-5)
    per_frame = torch.stack([torch.roll(z[:, :, t], t, dims=-1) for t in range(3)], dim=2)  # moving over time
    assert torch.allclose(log_spectrum(z), log_spectrum(per_frame), atol=1e-5)
    assert torch.allclose(log_spectrum(z), log_spectrum(z + 0.7), atol=1e-5)  # a background level


def test_same_shape_elsewhere_is_nearer_than_another_shape_here() -> None:
    """On pixels, no shift is circular and sizes differ, yet a moved, resized square stays nearest a square."""
    square = log_spectrum(_clip("square", 10, 10, 7, (0.9, 0.2, 0.1)))
    square_elsewhere = log_spectrum(_clip("square", 21, 19, 6.5, (0.9, 0.2, 0.1)))
    for other in ("circle", "triangle", "cross"):
        here = log_spectrum(_clip(other, 10, 10, 7, (0.9, 0.2, 0.1)))
        assert float(square @ square_elsewhere.T) > float(square @ here.T), other


def test_centre_spreads_scores_and_round_trips_through_extra() -> None:
    """Raw embeddings share a profile (cosines near 1); minus their centre, two different clips are far apart."""
    rng = np.random.default_rng(0)
    common = rng.random(160)
    emb = common + 0.05 * rng.standard_normal((50, 160))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    assert float(emb[0] @ emb[1]) > 0.98
    doc = center_doc(emb)
    assert doc["version"] == EMBEDDING_VERSION and doc["clips"] == 50 and len(doc["vector"]) == 160
    center = center_of({CENTER_KEY: doc})
    centred = center_rows(emb, center)
    assert np.allclose(np.linalg.norm(centred, axis=1), 1, atol=1e-5)
    assert abs(float(centred[0] @ centred[1])) < 0.5
    assert center_rows(emb, None) is emb  # a VAE without a centre: embeddings unchanged
    assert center_of({}) is None and center_of({CENTER_KEY: {**doc, "version": EMBEDDING_VERSION - 1}}) is None
    with pytest.raises(ValueError, match="not cut the way"):
        center_rows(emb[:, :120], center)


def test_update_extra_keeps_the_rest(tmp_path) -> None:
    from vidgen_core.models.io import read_model_config, save_model, update_extra
    from vidgen_core.models.vae import VideoVAE
    from vidgen_core.config import VAEConfig

    cfg = VAEConfig(base_channels=4, channel_mult=[1, 2], latent_channels=4)
    save_model(VideoVAE(cfg), "vae", cfg.model_dump(), tmp_path, extra={"a": 1})
    update_extra(tmp_path, {"b": [1.5]})
    assert read_model_config(tmp_path)["extra"] == {"a": 1, "b": [1.5]}
    assert not list(tmp_path.glob("*.tmp"))
