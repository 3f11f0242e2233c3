"""The clip embedding behind `embed`, `similar`, `compare`, `classify` and the probe: a latent log spectrum.

What a video shows should not depend on where in the frame it is: the
embedded default's shapes move, bounce and come in random colours and sizes,
so the same "triangle" is a different flattened latent at every position. A
linear probe on flattened latents (the first embedding, 1024 floats) scored
0.28 on the default's test split, chance being 0.25.

So the embedding keeps the latent's *amplitude spectrum* and drops its phase,
which is where position lives:

    z (Cz, T', H', W')   VAE posterior mean
    - per-frame mean     background level and colour do not count as structure
    |rfft2| over (H', W'), averaged over T'    invariant to (circular) translation, and to motion
    log1p                a flatter dynamic range: low frequencies dominate the raw amplitude
    L2-normalised per latent channel, then as a whole    every channel counts alike

giving ``D = Cz * H' * (W'//2 + 1)`` floats per clip (4 x 8 x 5 = 160 for the
default's 32x32 clips).

All those vectors are non-negative and share a common profile, so raw
cosines crowd near 1 (a circle against a circle 0.98, against a cross 0.97).
The VAE therefore carries the *centre* of its training clips' embeddings
(``extra["embedding_center"]``, recorded by the train_vae step), and
:func:`center_rows` subtracts it and normalises again, so that same-class
videos score well above other classes. A VAE saved without a centre gives
uncentred embeddings.

Chosen on three default runs' VAEs (bench/RESULTS.md, "Probe and retrieval",
with the variants that lost: square root instead of log, no per-channel
norm, no centre, a 3-D spectrum over time too): probe accuracy 0.962-0.971,
recall@5 0.962-0.990, where flattened latents scored 0.25-0.28. The same
transform of average-pooled pixels gives a weaker probe (0.875 against 0.971
in one run) but as good a ranking (recall@5 1.000 against 0.990): the
invariance does much of the work, the latent adds what a linear probe needs.

``EMBEDDING_VERSION`` is recorded with every embeddings file and probe, so a
vector made by another version is never compared with this one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

EMBEDDING_VERSION = 2
EMBEDDING_NAME = ("latent log amplitude spectrum (|rfft2| over H', W', mean over T', log1p, "
                  "L2-normalised per channel and whole, minus the VAE's centre)")
CENTER_KEY = "embedding_center"  # in a VAE's config.json "extra": {"version", "clips", "vector"}


def spectrum_dim(channels: int, height: int, width: int) -> int:
    """``D`` of :func:`log_spectrum` for a ``(B, channels, T, height, width)`` input."""
    return channels * height * (width // 2 + 1)


def log_spectrum(z: torch.Tensor) -> torch.Tensor:
    """Translation-invariant, unit-norm embedding (uncentred; see :func:`center_rows`): ``(B, C, T, H, W)`` -> float32 ``(B, C*H*(W//2+1))``.

    A clip with no structure at all (every frame flat) maps to the zero vector.
    """
    if z.dim() != 5:
        raise ValueError(f"expected (B, C, T, H, W), got shape {tuple(z.shape)}")
    z = z.float()
    amplitude = torch.fft.rfft2(z - z.mean(dim=(-2, -1), keepdim=True)).abs().mean(dim=2)  # (B, C, H, W//2+1)
    # What float32 rounding leaves of a flat frame after the mean is removed is not structure: zero it,
    # or a flat clip would be normalised into an arbitrary unit vector.
    noise = 1e-5 * z.shape[-2] * z.shape[-1] * (1.0 + z.abs().amax(dim=(1, 2, 3, 4)))  # (B,)
    amplitude = torch.where(amplitude > noise[:, None, None, None], amplitude, torch.zeros_like(amplitude))
    feats = torch.log1p(amplitude)
    feats = feats / feats.flatten(2).norm(dim=2)[..., None, None].clamp_min(1e-12)  # each channel counts alike
    feats = feats.flatten(1)
    return feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)


def center_of(extra: dict[str, Any]) -> np.ndarray | None:
    """The embedding centre a VAE's ``extra`` carries for this version, float32 ``(D,)``; None without one."""
    doc = extra.get(CENTER_KEY)
    if not isinstance(doc, dict) or doc.get("version") != EMBEDDING_VERSION:
        return None
    return np.asarray(doc["vector"], dtype=np.float32)


def center_doc(embeddings: np.ndarray) -> dict[str, Any]:
    """What :func:`center_of` reads back: the mean of ``(N, D)`` uncentred embeddings, JSON-able."""
    if embeddings.ndim != 2 or not len(embeddings):
        raise ValueError(f"need (N, D) embeddings with N >= 1, got shape {embeddings.shape}")
    return {"version": EMBEDDING_VERSION, "clips": int(len(embeddings)),
            "vector": [float(v) for v in embeddings.astype(np.float64).mean(axis=0)]}


def center_rows(embeddings: np.ndarray, center: np.ndarray | None) -> np.ndarray:
    """``(N, D)`` unit embeddings minus ``center``, L2-normalised again; unchanged when ``center`` is None."""
    if center is None:
        return embeddings
    if center.shape != embeddings.shape[1:]:
        raise ValueError(f"embedding centre has {center.shape[0]} values, the embeddings {embeddings.shape[1]}: "
                         "the clips were not cut the way the VAE was trained")
    out = embeddings - center
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)
