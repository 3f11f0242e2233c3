"""The codec's probability model: per-channel normalisation, the rate table, and Laplace scales.

Fitted once on the train split's latents (posterior means) and stored beside
the VAE's weights as ``codec.json`` (plain JSON: no pickle, readable by eye)::

    {"format": "vidgen-codec-prior", "version": 1, "latent_channels": C,
     "mean": [C], "std": [C],              # per-channel statistics of the train latents
     "steps": [Q],                         # quantisation step of each quality, coarse -> fine
     "default_quality": k, "clip_sigma": 16,
     "scales": [Q][2][C][11],              # Laplace scale per quality, mode, channel, bucket
     "fitted_on": {...}}                   # what the fit saw (clips, split)

Quantisation: ``q = clip(round(((z - mean) / std) / step), ±ceil(clip_sigma / step))``
per channel; dequantisation: ``z = mean + std * q * step``. A larger step
gives fewer, coarser symbols: the rate control. Modes and buckets are defined
in :mod:`vidgen_core.codec.context`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidgen_core.codec.context import MODES, TABLE_BUCKETS, buckets, laplace_bits, prediction
from vidgen_core.errors import UserError

PRIOR_FILE = "codec.json"
PRIOR_FORMAT = "vidgen-codec-prior"
PRIOR_VERSION = 1
# Step of each quality, coarse -> fine (in units of each channel's std): 2^(2 - k/2).
DEFAULT_STEPS = (4.0, 2.828, 2.0, 1.414, 1.0, 0.707, 0.5, 0.354, 0.25, 0.177, 0.125)
_SCALE_GRID = np.exp(np.linspace(np.log(0.02), np.log(400.0), 96))
_MIN_COUNT = 64  # fewer symbols in a bucket than this: use the channel's pooled scale
_HIST = 512  # |residual| histogram bins; larger values count in the last bin


@dataclass(frozen=True)
class Prior:
    """The probability model (see the module docstring). Arrays are float64."""

    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)
    steps: tuple[float, ...]
    scales: np.ndarray  # (Q, MODES, C, TABLE_BUCKETS)
    default_quality: int
    clip_sigma: float = 16.0
    fitted_on: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_qualities(self) -> int:
        return len(self.steps)

    def check_quality(self, quality: int) -> int:
        if not 0 <= quality < self.num_qualities:
            raise UserError(f"quality {quality} is out of range: this model has qualities 0..{self.num_qualities - 1} (0 = smallest file)")
        return quality

    def limit(self, quality: int) -> int:
        """Largest |q| at ``quality``: latents beyond ``clip_sigma`` stds are clipped."""
        return int(math.ceil(self.clip_sigma / self.steps[quality]))

    def _bcast(self, a: np.ndarray, ndim: int) -> np.ndarray:
        # (C,) -> (C, 1, 1, 1) for latents (..., C, T', H', W').
        return a.reshape(a.shape[0], *([1] * (ndim - 1)))

    def quantise(self, z: np.ndarray, quality: int) -> np.ndarray:
        """Latents ``(..., C, T', H', W')`` float -> int32 symbols of the same shape."""
        step, lim = self.steps[quality], self.limit(quality)
        y = (np.asarray(z, dtype=np.float64) - self._bcast(self.mean, 4)) / self._bcast(self.std, 4)
        return np.clip(np.rint(y / step), -lim, lim).astype(np.int32)

    def dequantise(self, q: np.ndarray, quality: int) -> np.ndarray:
        """int32 symbols ``(..., C, T', H', W')`` -> float32 latents the VAE decodes."""
        step = self.steps[quality]
        z = self._bcast(self.mean, 4) + self._bcast(self.std, 4) * (q.astype(np.float64) * step)
        return z.astype(np.float32)

    # ---------------------------------------------------------------- storage

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PRIOR_FORMAT, "version": PRIOR_VERSION, "latent_channels": self.channels,
            "mean": self.mean.tolist(), "std": self.std.tolist(), "steps": list(self.steps),
            "default_quality": self.default_quality, "clip_sigma": self.clip_sigma,
            "scales": self.scales.tolist(), "fitted_on": self.fitted_on,
        }

    def digest(self) -> str:
        """sha256 (16 hex) of the canonical JSON: what a .vgc file's model digest covers."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, doc: Any, where: str = PRIOR_FILE) -> Prior:
        """Validate and build; any problem is one line (UserError)."""

        def bad(what: str) -> UserError:
            return UserError(f"{where}: {what}; re-run the codec_eval step to fit it again")

        if not isinstance(doc, dict) or doc.get("format") != PRIOR_FORMAT:
            raise bad("not a vidgen codec probability model")
        if doc.get("version") != PRIOR_VERSION:
            raise bad(f"unsupported version {doc.get('version')!r}, expected {PRIOR_VERSION}")
        try:
            c = int(doc["latent_channels"])
            mean, std = np.asarray(doc["mean"], np.float64), np.asarray(doc["std"], np.float64)
            steps = tuple(float(s) for s in doc["steps"])
            scales = np.asarray(doc["scales"], np.float64)
            q = int(doc["default_quality"])
            clip_sigma = float(doc.get("clip_sigma", 16.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"missing or malformed field ({type(exc).__name__}: {exc})") from None
        if mean.shape != (c,) or std.shape != (c,) or not (std > 0).all() or not np.isfinite(mean).all():
            raise bad("mean/std must hold one finite value per latent channel (std > 0)")
        if not steps or any(not (s > 0 and math.isfinite(s)) for s in steps):
            raise bad("steps must be positive numbers")
        if scales.shape != (len(steps), MODES, c, TABLE_BUCKETS) or not (scales > 0).all():
            raise bad(f"scales must have shape {(len(steps), MODES, c, TABLE_BUCKETS)} with positive values")
        if not 0 <= q < len(steps) or not clip_sigma > 0:
            raise bad("default_quality or clip_sigma out of range")
        return cls(mean, std, steps, scales, q, clip_sigma, dict(doc.get("fitted_on") or {}))


def save_prior(prior: Prior, model_dir: str | Path) -> Path:
    """Write ``model_dir/codec.json`` (temporary name, then rename)."""
    path = Path(model_dir) / PRIOR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(prior.to_dict(), indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def load_prior(model_dir: str | Path) -> Prior | None:
    """The prior stored beside a model's weights, or None if it has none."""
    path = Path(model_dir) / PRIOR_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable codec probability model ({type(exc).__name__})") from None
    return Prior.from_dict(doc, str(path))


# -------------------------------------------------------------------- fitting


def _best_scale(hist: np.ndarray) -> float:
    """Scale on the grid that minimises the code length of a |residual| histogram."""
    values = np.arange(len(hist))
    nz = hist > 0
    bits = laplace_bits(values[nz][None, :], _SCALE_GRID[:, None]) @ hist[nz]
    return float(_SCALE_GRID[int(np.argmin(bits))])


def fit_prior(
    latents: np.ndarray, steps: tuple[float, ...] = DEFAULT_STEPS, default_quality: int = 7,
    clip_sigma: float = 16.0, fitted_on: dict[str, Any] | None = None,
) -> Prior:
    """Fit the probability model on latents ``(N, C, T', H', W')`` (one clip per row, frames in order).

    Each clip is coded as a video of its own (its first latent frame has no
    history), exactly as the coder would see it.
    """
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 5 or len(latents) == 0:
        raise ValueError(f"expected latents (N, C, T', H', W') with N >= 1, got {latents.shape}")
    c = latents.shape[1]
    mean = latents.mean(axis=(0, 2, 3, 4))
    std = np.maximum(latents.std(axis=(0, 2, 3, 4)), 1e-6)
    base = Prior(mean, std, tuple(steps), np.ones((len(steps), MODES, c, TABLE_BUCKETS)), default_quality, clip_sigma)
    scales = np.ones_like(base.scales)
    for qi in range(len(steps)):
        q = base.quantise(latents, qi)  # (N, C, T', H', W')
        hist = np.zeros((MODES, c, TABLE_BUCKETS, _HIST))
        for t in range(q.shape[2]):
            prev1 = q[:, :, t - 1] if t >= 1 else None
            prev2 = q[:, :, t - 2] if t >= 2 else None
            cur = q[:, :, t]
            for mode in range(MODES):
                r = np.minimum(np.abs(cur - prediction(mode, prev1, cur.shape)), _HIST - 1)
                b = buckets(mode, prev1, prev2, cur.shape)
                for ch in range(c):
                    np.add.at(hist[mode, ch], (b[:, ch].ravel(), r[:, ch].ravel()), 1)
        for mode in range(MODES):
            for ch in range(c):
                pooled = _best_scale(hist[mode, ch].sum(axis=0))
                for k in range(TABLE_BUCKETS):
                    h = hist[mode, ch, k]
                    scales[qi, mode, ch, k] = _best_scale(h) if h.sum() >= _MIN_COUNT else pooled
    prior = Prior(mean, std, tuple(float(s) for s in steps), scales, default_quality, clip_sigma, dict(fitted_on or {}))
    return Prior.from_dict(json.loads(json.dumps(prior.to_dict())))  # exactly what a reader of codec.json gets
