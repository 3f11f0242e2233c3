"""MLflow "models from code" script: the latent GAN + its frozen VAE as one pyfunc.

Artifacts: ``model_dir`` (the generator: ``config.json`` + ``weights.safetensors``)
and ``vae_dir`` (the VAE whose latent space it models). Both are rebuilt by
``vidgen_core.models.io`` — no pickle anywhere. The ``vidgen`` package must
be installed where it loads.

Usage::

    model = mlflow.pyfunc.load_model("models:/vidgen-gan@champion")
    videos = model.predict({"label": [0, 1, 2]})            # uint8 (3, T, H, W, 3)
    videos = model.predict(pd.DataFrame({"label": [0, 0]}), params={"seed": 7})

One row per sample. An unconditional GAN ignores the label values (use -1).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

DEFAULT_BATCH_SIZE = 16


class LatentGANPyfunc(PythonModel):
    """Sample uint8 videos: generator noise (+ class) -> VAE latents -> VAE decoder."""

    def load_context(self, context: Any) -> None:
        """Rebuild generator and VAE from the ``model_dir`` / ``vae_dir`` artifacts."""
        # Imported here: MLflow executes this file at log time to find the model object.
        from vidgen_core.eval.inference import default_device
        from vidgen_core.models.io import load_model
        from vidgen_core.tracking.artifact_safety import check_pyfunc_context

        check_pyfunc_context(context.artifacts)  # refuse pickle-bearing or non-safetensors artifacts

        device = default_device()
        generator, config = load_model(context.artifacts["model_dir"], device=device)
        vae, vae_config = load_model(context.artifacts["vae_dir"], device=device)
        if config.get("kind") != "gan" or vae_config.get("kind") != "vae":
            raise ValueError(
                f"expected a 'gan' model_dir and a 'vae' vae_dir, got "
                f"'{config.get('kind')}' and '{vae_config.get('kind')}'"
            )
        self.generator = generator.eval()
        self.vae = vae.eval()
        self.config = config

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Rows with a ``label`` column (or a dict of lists) -> uint8 videos ``(N, T, H, W, 3)``.

        Params: ``seed`` (noise seed, default 0: same seed and labels, same
        videos), ``batch_size`` (samples per forward pass, default 16).
        """
        from vidgen_core.eval.inference import generate

        params = params or {}
        table = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "label" not in table.columns:
            raise ValueError("GAN input needs a 'label' column: one row per video to generate")
        labels = table["label"].to_numpy(dtype=np.int64)
        return generate(
            self.generator,
            self.vae,
            labels if self.generator.conditional else None,
            num_samples=len(labels),
            batch_size=int(params.get("batch_size") or DEFAULT_BATCH_SIZE),
            seed=int(params.get("seed") or 0),
        )


mlflow.models.set_model(LatentGANPyfunc())
