"""What the entropy model conditions on: predictions and activity buckets from decoded latent frames.

Everything here is integer arithmetic on already-decoded quantised latents, so
the encoder and the decoder compute exactly the same contexts.

For one channel of latent frame ``t`` (all arrays ``(H', W')`` int32):

* **mode 0** ("intra"): prediction 0 (latents are centred per channel);
  activity = 3×3 sum of ``|q[t-1]|``.
* **mode 1** ("temporal"): prediction ``q[t-1]``; activity = 3×3 sum of
  ``|q[t-1] - q[t-2]|`` (where the picture moved last).

Activity ``a`` falls into bucket ``bit_length(a)`` capped at ``NUM_BUCKETS - 1``;
bucket ``UNKNOWN`` is used where the frames it needs do not exist yet (start of
a video). The probability model holds one Laplace scale per (quality, mode,
channel, bucket), fitted on the train split (see :mod:`vidgen_core.codec.prior`).
"""

from __future__ import annotations

import numpy as np

MODES = 2
NUM_BUCKETS = 10
UNKNOWN = NUM_BUCKETS  # index of the "no history yet" bucket
TABLE_BUCKETS = NUM_BUCKETS + 1


def box3(a: np.ndarray) -> np.ndarray:
    """3×3 neighbourhood sum over the last two axes (zeros outside), same shape, int64."""
    a = a.astype(np.int64, copy=False)
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def _bucket_of(activity: np.ndarray) -> np.ndarray:
    # bit_length: 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...
    b = np.zeros(activity.shape, dtype=np.int64)
    nz = activity > 0
    b[nz] = np.floor(np.log2(activity[nz])).astype(np.int64) + 1
    return np.minimum(b, NUM_BUCKETS - 1)


def prediction(mode: int, prev1: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Predicted quantised latent (int32, ``shape``) of one frame given the previous frame."""
    if mode == 1 and prev1 is not None:
        return prev1.astype(np.int32, copy=False)
    return np.zeros(shape, dtype=np.int32)


def buckets(mode: int, prev1: np.ndarray | None, prev2: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Bucket index (int64, ``shape``) of every symbol of one frame under ``mode``."""
    if mode == 0:
        if prev1 is None:
            return np.full(shape, UNKNOWN, dtype=np.int64)
        return _bucket_of(box3(np.abs(prev1)))
    if prev1 is None or prev2 is None:
        return np.full(shape, UNKNOWN, dtype=np.int64)
    return _bucket_of(box3(np.abs(prev1.astype(np.int64) - prev2)))


def laplace_bits(r_abs: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Ideal code length (bits) of integers with magnitude ``r_abs`` under a rounded Laplace(0, scale).

    Used to fit scales and to pick modes; the coder's own (fixed-point) model
    differs by a fraction of a percent.
    """
    scale = np.asarray(scale, dtype=np.float64)
    p0 = -np.expm1(-0.5 / scale)
    pnz = 0.5 * np.exp(-(np.asarray(r_abs, dtype=np.float64) - 0.5) / scale) * -np.expm1(-1.0 / scale)
    p = np.where(r_abs == 0, p0, pnz)
    return -np.log2(np.maximum(p, 2.0**-24))
