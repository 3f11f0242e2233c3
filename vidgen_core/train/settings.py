"""What the framework-free fit loops read of a trainer's settings: a frozen stdlib dataclass.

The pipeline's sections (:class:`vidgen_core.config.TrainConfig` for the GAN,
:class:`~vidgen_core.config.VAETrainConfig` for the VAE) are pydantic models
that also carry what only Ray Train reads (workers, resources, the data feed,
the failure policy). :meth:`FitSettings.of` keeps what the loops use, so
``fit_vae`` / ``fit_gan`` / :class:`~vidgen_core.train.optim.Optim` depend on
nothing but this module, and a GPU box without pydantic (``bench/train_gpu.py``)
can build one directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FitSettings:
    """One trainer's loop settings (meanings as in :class:`vidgen_core.config.TrainConfig`)."""

    # optimisation
    steps: int
    lr: float
    lr_d: float | None  # discriminator LR (GAN's D, VAE's patch D); None = lr
    grad_accum: int
    grad_clip: float
    lr_schedule: str  # constant | cosine | linear
    warmup_steps: int
    min_lr_ratio: float
    seed: int
    # numerics
    precision: str  # auto | fp32 | bf16 | fp16
    memory_format: str  # auto | channels_last_3d | contiguous
    compile: bool
    # cadence
    checkpoint_every: int
    log_every: int
    sample_every: int
    # VAE only (the GAN's section has none of them: these defaults switch each term off)
    kl_weight: float = 0.0
    recon_loss: str = "l2"
    adv_weight: float = 0.0
    adv_start_step: int = 0
    adv_disc_channels: int = 32
    augment: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Any) -> FitSettings:
        """``settings`` itself if it is one, else the fields of any object that has them (a config section).

        Raises:
            ValueError: ``settings`` lacks a setting every loop needs (one without a default above).
        """
        if isinstance(settings, cls):
            return settings
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [n for n in required if not hasattr(settings, n)]
        if missing:
            raise ValueError(f"training settings lack {missing}")
        values = {n: getattr(settings, n) for n in names if hasattr(settings, n)}
        if "augment" in values:
            values["augment"] = tuple(values["augment"])
        return cls(**values)
