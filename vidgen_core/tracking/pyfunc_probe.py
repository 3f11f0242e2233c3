"""MLflow "models from code" script: a linear probe on VAE latents + that VAE, as one pyfunc.

Artifacts: ``model_dir`` (the probe: ``config.json`` + ``weights.safetensors``
+ ``class_names.json``) and ``vae_dir`` (the VAE whose latents it reads).
Both are rebuilt by vidgen code from safetensors — no pickle anywhere.

Usage::

    model = mlflow.pyfunc.load_model("models:/vidgen-probe@champion")
    probs = model.predict(clips)  # uint8 (N, T, H, W, 3) -> float32 (N, C), class order in config extra.class_names
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

DEFAULT_BATCH_SIZE = 16


class LatentProbePyfunc(PythonModel):
    """Classify uint8 clips: clip embedding (log spectrum of the VAE posterior mean) -> linear probe -> softmax."""

    def load_context(self, context: Any) -> None:
        """Rebuild probe and VAE from the ``model_dir`` / ``vae_dir`` artifacts."""
        from vidgen_core.eval.inference import default_device
        from vidgen_core.models.io import load_model
        from vidgen_core.tracking.artifact_safety import check_pyfunc_context
        from vidgen_core.uses.probe import load_probe

        check_pyfunc_context(context.artifacts)  # refuse pickle-bearing or non-safetensors artifacts
        from vidgen_core.errors import UserError
        from vidgen_core.uses.features import EMBEDDING_VERSION, center_of

        probe, config = load_probe(context.artifacts["model_dir"])
        version = config.get("extra", {}).get("embedding_version", 1)  # probes before versions: flattened latents
        if version != EMBEDDING_VERSION:
            # A UserError, not a ValueError: `vidgen classify` prints it as one line and exits 2.
            raise UserError(f"this probe reads clip embedding version {version}, this vidgen makes version "
                             f"{EMBEDDING_VERSION}; re-run the workflow's train_probe step and register it again")
        vae, vae_config = load_model(context.artifacts["vae_dir"], device=default_device())
        if vae_config.get("kind") != "vae":
            raise ValueError(f"vae_dir holds a '{vae_config.get('kind')}' model, expected 'vae'")
        self.probe, self.vae, self.config = probe, vae.eval(), config
        self.center = center_of(vae_config.get("extra") or {})  # the probe was fitted on features centred so
        self.class_names = list(config["extra"]["class_names"])

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """uint8 clips ``(N, T, H, W, 3)`` -> class probabilities float32 ``(N, C)``."""
        from vidgen_core.uses.embed import encode_clips
        from vidgen_core.uses.probe import predict_proba

        frames = np.asarray(model_input)
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 clips (N, T, H, W, 3), got {frames.dtype} {frames.shape}")
        batch_size = int((params or {}).get("batch_size") or DEFAULT_BATCH_SIZE)
        return predict_proba(self.probe, encode_clips(self.vae, frames, batch_size, self.center))


mlflow.models.set_model(LatentProbePyfunc())
