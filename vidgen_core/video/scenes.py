"""Hard-cut detection from the difference of consecutive low-resolution frames.

A frame starts a new scene when the mean absolute change of its 16x16 luma
thumbnail (values in [0, 1]) against the previous frame's exceeds a threshold.
Thumbnails are box averages of frames ingest has already decoded and scaled,
so detection costs no extra decoding or swscale pass; averaging over large
blocks makes it blind to small moving objects and noise, and sensitive to a
change of the whole picture.
"""

from __future__ import annotations

import numpy as np

THUMB_SIDE = 16
# ITU-R BT.601 luma weights.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma_thumbnail(rgb: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """Box-averaged luma of a uint8 ``(H, W, 3)`` frame: float32 ``(min(side, H), min(side, W))`` in [0, 1]."""
    h, w = rgb.shape[:2]
    ys = (np.arange(min(side, h)) * h) // min(side, h)
    xs = (np.arange(min(side, w)) * w) // min(side, w)
    # reduceat sums each block between consecutive edges; divide by the block areas.
    sums = np.add.reduceat(np.add.reduceat(rgb.astype(np.float32), ys, axis=0), xs, axis=1)
    counts = np.diff(np.append(ys, h))[:, None] * np.diff(np.append(xs, w))[None, :]
    return (sums @ _LUMA) / (counts * 255.0)


class CutDetector:
    """Feed frames in order; :meth:`is_cut` says whether a frame starts a new scene."""

    def __init__(self, threshold: float) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._prev: np.ndarray | None = None

    def change(self, rgb: np.ndarray) -> float:
        """Mean absolute thumbnail change against the previous frame (0 for the first frame)."""
        thumb = luma_thumbnail(rgb)
        prev, self._prev = self._prev, thumb
        if prev is None or prev.shape != thumb.shape:
            return 0.0
        return float(np.abs(thumb - prev).mean())

    def is_cut(self, rgb: np.ndarray) -> bool:
        """True when ``rgb`` (uint8 ``(H, W, 3)``) differs from the previous frame by more than the threshold."""
        return self.change(rgb) > self.threshold
