"""MLflow "models from code" script: the video VAE as a pyfunc model.

MLflow copies this file into the logged model and executes it on load; the
weights come from the ``model_dir`` artifact (``config.json`` +
``weights.safetensors``) and are rebuilt by ``vidgen_core.models.io`` — no
pickle anywhere. It needs the ``vidgen`` package installed where it loads.

Usage::

    model = mlflow.pyfunc.load_model("models:/vidgen-vae@champion")
    recon = model.predict(clips)  # uint8 (N, T, H, W, 3) -> uint8 (N, T, H, W, 3)
    recon = model.predict(clips, params={"batch_size": 4})
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

DEFAULT_BATCH_SIZE = 8


class VideoVAEPyfunc(PythonModel):
    """Reconstruct uint8 clips with the posterior mean of a saved VideoVAE."""

    def load_context(self, context: Any) -> None:
        """Rebuild the VAE from ``context.artifacts["model_dir"]`` on CUDA if visible, else CPU."""
        # Imported here, not at the top: MLflow executes this file once at log
        # time just to find the model object, which must stay cheap.
        from vidgen_core.eval.inference import default_device
        from vidgen_core.models.io import load_model
        from vidgen_core.tracking.artifact_safety import check_pyfunc_context

        check_pyfunc_context(context.artifacts)  # refuse pickle-bearing or non-safetensors artifacts

        model, config = load_model(context.artifacts["model_dir"], device=default_device())
        if config.get("kind") != "vae":
            raise ValueError(f"model_dir holds a '{config.get('kind')}' model, expected 'vae'")
        self.vae = model.eval()
        self.config = config
        # The codec's probability model, stored beside the weights by the register step (JSON, no pickle).
        from vidgen_core.codec.prior import load_prior

        self.codec_prior = load_prior(context.artifacts["model_dir"])

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """uint8 clips ``(N, T, H, W, 3)`` -> uint8 reconstructions ``(N, T, H, W, 3)``.

        Params: ``batch_size`` (clips per forward pass, default 8).
        """
        from vidgen_core.eval.inference import reconstruct

        batch_size = int((params or {}).get("batch_size") or DEFAULT_BATCH_SIZE)
        frames = np.asarray(model_input)
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 clips (N, T, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        return reconstruct(self.vae, frames, batch_size)


mlflow.models.set_model(VideoVAEPyfunc())
