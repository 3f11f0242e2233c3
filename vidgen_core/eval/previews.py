"""Pictures people look at: lossless PNG strips and grids of clips, upscaled so a 32-pixel frame is visible.

Colour is judged on these, never on a 4:2:0 H.264 of tiny frames (chroma
subsampling alone greys out a few-pixel object). Frames are enlarged by
nearest-neighbour (every pixel stays a visible square, no smoothing). All
inputs are uint8 clips (N, T, H, W, 3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GAP = 2  # pixels of separator between frames (before upscaling)
GAP_COLOUR = 96  # a mid grey, distinct from both the dark backgrounds and the bright objects


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of (H, W, 3) (or (T, H, W, 3)) by ``factor`` in H and W."""
    if factor < 1:
        raise ValueError(f"upscale factor must be >= 1, got {factor}")
    return image.repeat(factor, axis=-3).repeat(factor, axis=-2)


def scale_for(height: int, min_height: int = 128) -> int:
    """The smallest integer factor that makes a ``height``-pixel frame at least ``min_height`` tall."""
    return max(1, -(-min_height // max(height, 1)))


def _row(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> (H, T·W + gaps, 3): frames side by side."""
    t, h, w, _ = frames.shape
    out = np.full((h, t * w + (t - 1) * GAP, 3), GAP_COLOUR, dtype=np.uint8)
    for i in range(t):
        out[:, i * (w + GAP) : i * (w + GAP) + w] = frames[i]
    return out


def _stack(rows: list[np.ndarray], gap: int) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    parts = []
    for i, r in enumerate(rows):
        if r.shape[1] < width:
            r = np.concatenate([r, np.full((r.shape[0], width - r.shape[1], 3), GAP_COLOUR, np.uint8)], axis=1)
        parts.append(r)
        if i < len(rows) - 1:
            parts.append(np.full((gap, width, 3), GAP_COLOUR, dtype=np.uint8))
    return np.concatenate(parts, axis=0)


def recon_strip(originals: np.ndarray, recons: np.ndarray, scale: int | None = None) -> np.ndarray:
    """Original above reconstruction, every frame left to right, one pair per clip: uint8 (H', W', 3).

    Args:
        originals, recons: uint8 (N, T, H, W, 3), same shape.
        scale: upscaling factor; None = enough for ≥ 128-pixel frames.
    """
    if originals.shape != recons.shape or originals.ndim != 5:
        raise ValueError(f"originals {originals.shape} and recons {recons.shape} must be equal (N, T, H, W, 3)")
    pairs = [_stack([_row(o), _row(r)], GAP) for o, r in zip(originals, recons)]
    strip = _stack(pairs, 4 * GAP)
    return upscale(strip, scale or scale_for(originals.shape[2]))


def sample_grid(clips_by_row: list[np.ndarray], frame: int | None = None, scale: int | None = None) -> np.ndarray:
    """One row per class: its samples' frame ``frame`` (default: the middle one) side by side: uint8 (H', W', 3).

    Args:
        clips_by_row: per row, uint8 (n, T, H, W, 3).
    """
    if not clips_by_row:
        raise ValueError("no rows to draw")
    t = clips_by_row[0].shape[1]
    k = t // 2 if frame is None else frame
    rows = [_row(c[:, k]) for c in clips_by_row]
    return upscale(_stack(rows, 2 * GAP), scale or scale_for(clips_by_row[0].shape[2]))


def grid_video(clips_by_row: list[np.ndarray], scale: int | None = None) -> np.ndarray:
    """The animated :func:`sample_grid`: uint8 (T, H', W', 3), frame t showing every sample's frame t."""
    t = clips_by_row[0].shape[1]
    return np.stack([sample_grid(clips_by_row, frame=i, scale=scale) for i in range(t)])


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """Write uint8 (H, W, 3) as a lossless PNG."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    Image.fromarray(image).save(path, format="PNG")
    return Path(path)
