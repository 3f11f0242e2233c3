"""Reconstruction metrics on uint8 video clips, and the mean-frame baseline.

All functions take stored clips: uint8 numpy arrays ``(N, T, H, W, 3)``.

Definitions (what the numbers in MLflow mean):

* **PSNR** of one clip is ``10 * log10(255**2 / MSE)`` with the MSE taken over
  every pixel and channel of the whole clip (T×H×W×3 values). The reported
  value is the **mean over clips** of that per-clip PSNR, in dB. Identical
  clips (MSE = 0) score :data:`MAX_PSNR_DB` instead of infinity, so a mean
  stays finite; any non-zero uint8 error on a clip of fewer than 1e10 values
  scores below 148.2 dB, so the cap only ever replaces an exact match.
* **SSIM** is torchmetrics' SSIM (Gaussian window 11, or the largest odd size
  that fits frames under 11 px; sigma 1.5; data range
  255) of each RGB frame, averaged over the frames of a clip, then over clips.
  Every clip has T frames, so this equals the mean over all frames.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_PSNR_DB = 150.0  # score of an exact reconstruction (see module docstring)
_CHUNK_VALUES = 1 << 24  # values per chunk: bounds float64 memory to ~128 MB per tensor


def _check_pair(pred: np.ndarray, target: np.ndarray) -> None:
    for name, a in (("pred", pred), ("target", target)):
        if a.dtype != np.uint8 or a.ndim != 5 or a.shape[-1] != 3:
            raise ValueError(f"{name} must be uint8 (N, T, H, W, 3), got {a.dtype} {a.shape}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
    if pred.shape[0] == 0:
        raise ValueError("metrics need at least one clip")


def _clips_per_chunk(values_per_clip: int) -> int:
    return max(1, _CHUNK_VALUES // max(1, values_per_clip))


def psnr_per_clip(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """PSNR of each clip in dB, shape ``(N,)`` float64, capped at :data:`MAX_PSNR_DB`.

    Args:
        pred: uint8 ``(N, T, H, W, 3)``.
        target: uint8 ``(N, T, H, W, 3)``.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _check_pair(pred, target)
    out = []
    step = _clips_per_chunk(int(np.prod(pred.shape[1:])))
    for i in range(0, len(pred), step):
        # float64: a sum of millions of squared errors must not lose the small ones.
        p = torch.from_numpy(pred[i : i + step]).to(torch.float64)
        t = torch.from_numpy(target[i : i + step]).to(torch.float64)
        v = peak_signal_noise_ratio(p, t, data_range=255.0, reduction="none", dim=(1, 2, 3, 4))
        out.append(torch.clamp(torch.nan_to_num(v, posinf=MAX_PSNR_DB), max=MAX_PSNR_DB))
    return torch.cat(out).numpy()


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over clips of the per-clip PSNR, in dB (see module docstring).

    Args:
        pred: uint8 ``(N, T, H, W, 3)`` reconstruction.
        target: uint8 ``(N, T, H, W, 3)`` original clips.
    """
    return float(psnr_per_clip(pred, target).mean())


def _ssim_kernel(h: int, w: int) -> int:
    # torchmetrics pads by reflection, which needs the window to fit in the frame:
    # frames smaller than 11 px use the largest odd window that fits.
    k = min(11, h, w)
    return k if k % 2 == 1 else k - 1


def ssim_per_clip(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean per-frame SSIM of each clip, shape ``(N,)`` float64, in [-1, 1].

    Args:
        pred: uint8 ``(N, T, H, W, 3)``.
        target: uint8 ``(N, T, H, W, 3)``.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(pred, target)
    n, t, h, w, _ = pred.shape
    kernel = _ssim_kernel(h, w)
    step = _clips_per_chunk(t * h * w * 3)
    out = []
    for i in range(0, n, step):
        # (n, T, H, W, 3) -> (n*T, 3, H, W): SSIM is an image metric, applied per frame.
        # float32 and contiguous: CPU convolutions in float64 took 12.8 s for 104 clips of
        # 8 x 32 x 32 against 0.7 s here; the per-clip SSIM of real clips moved by at most 7e-6
        # (flat frames, where E[x^2] - E[x]^2 cancels, by up to 2e-4).
        p = torch.from_numpy(pred[i : i + step]).to(torch.float32)
        q = torch.from_numpy(target[i : i + step]).to(torch.float32)
        m = p.shape[0]
        p = p.reshape(m * t, h, w, 3).permute(0, 3, 1, 2).contiguous()
        q = q.reshape(m * t, h, w, 3).permute(0, 3, 1, 2).contiguous()
        v = structural_similarity_index_measure(
            p, q, data_range=255.0, kernel_size=kernel, reduction="none"
        )
        out.append(v.reshape(m, t).double().mean(dim=1))
    return torch.cat(out).numpy()


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM over all frames of all clips (see module docstring).

    Args:
        pred: uint8 ``(N, T, H, W, 3)`` reconstruction.
        target: uint8 ``(N, T, H, W, 3)`` original clips.
    """
    return float(ssim_per_clip(pred, target).mean())


def mean_frame_baseline(clips: np.ndarray) -> np.ndarray:
    """The trivial "codec": each clip becomes its temporal mean frame, repeated.

    A VAE that cannot beat this has learned nothing about motion or detail
    beyond the static background, which makes it the registry gate.

    Args:
        clips: uint8 ``(N, T, H, W, 3)``.

    Returns:
        uint8 ``(N, T, H, W, 3)``: for every t, ``round(mean over T of clips[n])``.
    """
    if clips.dtype != np.uint8 or clips.ndim != 5:
        raise ValueError(f"clips must be uint8 (N, T, H, W, 3), got {clips.dtype} {clips.shape}")
    mean = np.rint(clips.mean(axis=1, dtype=np.float64, keepdims=True)).astype(np.uint8)
    return np.broadcast_to(mean, clips.shape).copy()


FOREGROUND_THRESHOLD = 40  # uint8 levels away from the background colour that make a pixel "object"


def foreground_mask(clips: np.ndarray, threshold: int = FOREGROUND_THRESHOLD) -> np.ndarray:
    """Boolean ``(N, T, H, W)``: pixels that differ from their clip's background colour.

    The background colour of a clip is the per-channel median over all its
    pixels (objects cover a minority of the frame); a pixel is foreground when
    any channel differs from it by more than ``threshold`` levels.
    """
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be uint8 (N, T, H, W, 3), got {clips.dtype} {clips.shape}")
    flat = clips.reshape(len(clips), -1, 3)
    background = np.median(flat, axis=1).astype(np.int16)  # (N, 3)
    diff = np.abs(clips.astype(np.int16) - background[:, None, None, None, :])
    return diff.max(axis=-1) > threshold


def chroma(clips: np.ndarray) -> np.ndarray:
    """Per-pixel colourfulness ``max(R, G, B) - min(R, G, B)`` in uint8 levels: (N, T, H, W) float32.

    HSV's chroma: 0 for any grey, up to 255 for a pure primary colour.
    """
    c = clips.astype(np.float32)
    return c.max(axis=-1) - c.min(axis=-1)


def saturation_ratio(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean chroma of ``pred`` over the foreground of ``target`` / that of ``target`` itself.

    1.0: objects keep their colourfulness; 0.2: they decode as grey blobs. The
    mask comes from the originals (:func:`foreground_mask`) unless given. NaN
    when the originals have no colourful foreground to compare.

    Args:
        pred: uint8 ``(N, T, H, W, 3)`` reconstructions or samples.
        target: uint8 ``(N, T, H, W, 3)`` originals (for samples: real clips of the same shape).
        mask: boolean ``(N, T, H, W)`` foreground of ``target``.
    """
    _check_pair(pred, target)
    m = foreground_mask(target) if mask is None else mask
    ref = float(chroma(target)[m].sum())
    if ref <= 0:
        return float("nan")
    return float(chroma(pred)[m].sum()) / ref
