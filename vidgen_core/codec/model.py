"""The VAE as a codec: its windows, padding, latents, and its identity in a ``.vgc`` header.

    frames uint8 (n, H, W, 3), n <= window
      -> pad: H, W up to the VAE's spatial stride (edge rows/columns), n up to its
         temporal stride (the last frame repeated)
      -> VAE encoder, posterior mean z (C, T', H', W')      [encode_window]
      -> prior.quantise -> int32 symbols                      [entropy-coded]
      -> prior.dequantise -> VAE decoder -> crop back         [decode_window]

Windows are coded one at a time with batch size 1, in compress and decompress
alike, so a file decodes to exactly what :func:`decode_window` gives for the
same symbols.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidgen_core.codec.prior import Prior, load_prior
from vidgen_core.errors import UserError


@dataclass(frozen=True)
class CodecModel:
    """A VAE, its probability model, and who it is.

    Attributes:
        vae: a VideoVAE in eval mode.
        prior: the probability model fitted for it.
        name / version: the registered model (version 0: not registered).
        weights_digest: ``module_digest`` of the VAE (16 hex).
        window: frames per VAE window (the model's training clip length).
    """

    vae: torch.nn.Module
    prior: Prior
    name: str
    version: int
    weights_digest: str
    window: int

    @property
    def digest(self) -> bytes:
        """8 bytes over weights and prior: a file decodes only with the very model that wrote it."""
        return hashlib.sha256(f"{self.weights_digest}:{self.prior.digest()}".encode()).digest()[:8]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else self.name

    @property
    def strides(self) -> tuple[int, int]:
        """(temporal, spatial) downsampling of the VAE."""
        return int(self.vae.cfg.temporal_downsample), int(self.vae.cfg.spatial_downsample)

    def padding(self, height: int, width: int) -> tuple[int, int]:
        s = self.strides[1]
        return (-height) % s, (-width) % s

    @torch.no_grad()
    def encode_window(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``(n, H, W, 3)`` -> posterior mean float32 ``(C, T', H', W')`` of the padded window."""
        from vidgen_core.eval.inference import module_device
        from vidgen_core.models.vae import frames_to_video

        x = frames_to_video(pad_window(frames, *self.strides)[None], module_device(self.vae))
        return self.vae.encode(x).mean[0].float().cpu().numpy()

    @torch.no_grad()
    def decode_window(self, q: np.ndarray, quality: int, frames: int, height: int, width: int) -> np.ndarray:
        """int32 symbols ``(C, T', H', W')`` -> uint8 ``(frames, height, width, 3)`` (padding cropped)."""
        from vidgen_core.eval.inference import module_device
        from vidgen_core.models.vae import video_to_frames

        z = torch.from_numpy(self.prior.dequantise(q, quality))[None].to(module_device(self.vae))
        return video_to_frames(self.vae.decode(z))[0, :frames, :height, :width]

    def symbols(self, frames: np.ndarray, quality: int) -> np.ndarray:
        """What compress codes for one window: int32 ``(C, T', H', W')``."""
        return self.prior.quantise(self.encode_window(frames), quality)


def pad_window(frames: np.ndarray, t_stride: int, s_stride: int) -> np.ndarray:
    """Edge-pad uint8 ``(n, H, W, 3)`` so that n, H, W divide by the strides."""
    n, h, w = frames.shape[:3]
    pads = ((0, (-n) % t_stride), (0, (-h) % s_stride), (0, (-w) % s_stride), (0, 0))
    return np.pad(frames, pads, mode="edge") if any(p[1] for p in pads) else frames


def codec_model(vae: torch.nn.Module, prior: Prior | None, *, name: str, version: int, window: int,
                weights_digest: str | None = None) -> CodecModel:
    """Check that the VAE and prior belong together and make a :class:`CodecModel`."""
    from vidgen_core.uses.loading import module_digest

    if prior is None:
        raise UserError(
            f"'{name}' has no codec probability model (codec.json); register it with a pipeline that ran codec_eval"
        )
    channels = int(vae.cfg.latent_channels)
    if prior.channels != channels:
        raise UserError(f"codec.json is for {prior.channels} latent channels, the VAE has {channels}")
    t = int(vae.cfg.temporal_downsample)
    window = max(t, window - window % t)
    return CodecModel(vae.eval(), prior, name, int(version), weights_digest or module_digest(vae), window)


def load_local(model_dir: str | Path, name: str = "local-vae") -> CodecModel:
    """A CodecModel from a model directory (``config.json`` + ``weights.safetensors`` + ``codec.json``)."""
    from vidgen_core.models.io import load_model

    vae, config = load_model(model_dir)
    if config.get("kind") != "vae":
        raise UserError(f"'{model_dir}' holds a {config.get('kind')} model, not a VAE")
    window = int((config.get("extra") or {}).get("clip_len", 8))
    return codec_model(vae, load_prior(model_dir), name=name, version=0, window=window)


def load_registered(uri: str, command: str, tracking_uri: str | None = None) -> CodecModel:
    """A CodecModel from ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (one-line errors)."""
    from vidgen_core.uses.loading import load_for_use

    m = load_for_use(uri, "vae", command, tracking_uri=tracking_uri)
    if not m.name or not m.version:
        raise UserError(f"'{uri}' is not a registered model; pass models:/NAME@ALIAS or models:/NAME/VERSION")
    prior = getattr(m.python_model, "codec_prior", None)
    window = int(m.extra.get("clip_len", 8))
    return codec_model(m.python_model.vae, prior, name=m.name, version=int(m.version), window=window,
                       weights_digest=m.digest)
