"""PSNR and SSIM of a decoded video against its original, for both codecs alike.

PSNR is :func:`vidgen_core.eval.metrics.psnr_per_clip` on the whole video.
SSIM is the same computation as :func:`vidgen_core.eval.metrics.ssim_per_clip`
(torchmetrics: Gaussian window σ = 1.5 over 11 taps, reflection padding,
K1 = 0.01, K2 = 0.03, range 255, per RGB frame, mean over frames), with the
Gaussian applied as two 1-D passes instead of one 11×11 pass, in float64: the
same numbers to within the float32 rounding of ``ssim_per_clip`` (~1e-5; a test
holds them together), fast enough for an RD sweep of ~50 decodes per video.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_SIGMA, _TAPS = 1.5, 11
_C1, _C2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2


def psnr_video(decoded: np.ndarray, original: np.ndarray) -> float:
    """PSNR (dB) of uint8 ``(T, H, W, 3)`` videos, MSE over every value of the video."""
    from vidgen_core.eval.metrics import psnr_per_clip

    return float(psnr_per_clip(decoded[None], original[None])[0])


def ssim_video(decoded: np.ndarray, original: np.ndarray) -> float:
    """Mean per-frame SSIM of uint8 ``(T, H, W, 3)`` videos (see the module docstring)."""
    half = _TAPS // 2
    g = torch.exp(-((torch.arange(_TAPS, dtype=torch.float64) - half) ** 2) / (2 * _SIGMA**2))
    g = g / g.sum()
    p = torch.from_numpy(np.ascontiguousarray(decoded)).to(torch.float64).permute(0, 3, 1, 2)
    q = torch.from_numpy(np.ascontiguousarray(original)).to(torch.float64).permute(0, 3, 1, 2)
    n, c, h, w = p.shape
    x = F.pad(torch.cat((p, q, p * p, q * q, p * q)), (half, half, half, half), mode="reflect")
    x = x.reshape(-1, 1, h + 2 * half, w + 2 * half)
    x = F.conv2d(F.conv2d(x, g.view(1, 1, _TAPS, 1)), g.view(1, 1, 1, _TAPS))
    mp, mq, pp, qq, pq = x.reshape(5, n, c, h, w)
    var_p = torch.clamp(pp - mp * mp, min=0.0)
    var_q = torch.clamp(qq - mq * mq, min=0.0)
    cov = pq - mp * mq
    s = ((2 * mp * mq + _C1) * (2 * cov + _C2)) / ((mp * mp + mq * mq + _C1) * (var_p + var_q + _C2))
    return float(s.reshape(n, -1).mean(-1).mean())
