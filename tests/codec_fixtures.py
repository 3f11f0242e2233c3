"""Small models and videos for the codec tests (no MLflow, no training: the bitstream is what is tested)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidgen_core.config import VAEConfig


def moving_square_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, H, W, 3): a coloured square crossing a gradient background, plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    bg = np.stack([40 + 100 * xx / width, 60 + 80 * yy / height, np.full_like(xx, 90.0)], -1)
    out = np.empty((n, height, width, 3), np.uint8)
    side = max(4, min(height, width) // 4)
    for t in range(n):
        f = bg.copy()
        x0, y0 = (3 * t) % max(1, width - side), (2 * t) % max(1, height - side)
        f[y0 : y0 + side, x0 : x0 + side] = (220, 40, 60)
        out[t] = np.clip(f + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8)
    return out


def write_video(path: Path, frames: np.ndarray, fps: int = 12) -> Path:
    """Frames as a lossless FFV1 video (Matroska): any size, odd ones included, as a user's file may be."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def tiny_vae(seed: int = 0, base_channels: int = 4):
    from vidgen_core.models.vae import VideoVAE

    torch.manual_seed(seed)
    return VideoVAE(VAEConfig(base_channels=base_channels, channel_mult=[1, 2], latent_channels=4)).eval()


def tiny_codec(seed: int = 0, name: str = "vidgen-vae", version: int = 1, window: int = 8, base_channels: int = 4):
    """An untrained tiny VAE with a probability model fitted on its latents of moving-square clips."""
    from vidgen_core.codec.model import codec_model
    from vidgen_core.codec.prior import fit_prior
    from vidgen_core.models.vae import frames_to_video

    vae = tiny_vae(seed, base_channels)
    clips = np.stack([moving_square_frames(8, 32, 32, seed=s) for s in range(6)])
    with torch.no_grad():
        lat = vae.encode(frames_to_video(clips)).mean.numpy()
    return codec_model(vae, fit_prior(lat), name=name, version=version, window=window)


def save_codec_model(model, out: Path) -> Path:
    """A model directory (config.json + weights.safetensors + codec.json) for ``load_local`` / registration."""
    from vidgen_core.codec.prior import save_prior
    from vidgen_core.models.io import save_model

    cfg = model.vae.cfg
    save_model(model.vae, "vae", dict(vars(cfg)) if not hasattr(cfg, "model_dump") else cfg.model_dump(), out,
               extra={"clip_len": model.window, "size": 32, "latent_shape": [4, model.window // 2, 8, 8]})
    save_prior(model.prior, out)
    return out
