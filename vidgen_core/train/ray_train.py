"""Ray Train adapters: the entry points the workflow steps call.

* :func:`~vidgen_core.train.ray_train_vae.train_vae_ray` — the VAE (DDP, bf16 on GPU, checkpoints, recovery);
* :func:`~vidgen_core.train.ray_train_gan.train_gan_ray` — the latent (or pixel) GAN on the frozen VAE.

Shared plumbing: :mod:`vidgen_core.train.ray_driver`, :mod:`~vidgen_core.train.ray_worker`, :mod:`~vidgen_core.train.ray_tracker`.
Importing this module is cheap: Ray and MLflow are imported inside functions.
"""

from __future__ import annotations

from vidgen_core.train.ray_train_gan import train_gan_ray
from vidgen_core.train.ray_train_vae import train_vae_ray

__all__ = ["train_gan_ray", "train_vae_ray"]
