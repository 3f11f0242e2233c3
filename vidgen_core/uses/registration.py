"""Register the latent probe as ``<prefix>-probe``, linked in lineage to the VAE version it reads."""

from __future__ import annotations

from typing import Any

# Headline figures copied onto the probe version (full precision, like the VAE's eval tags).
PROBE_TAGS = ("probe_latent_accuracy", "probe_pixel_accuracy", "retrieval_latent_recall_at_1",
              "retrieval_latent_recall_at_5", "retrieval_latent_map", "retrieval_pixel_recall_at_5",
              "retrieval_pixel_map", "embed_clips_per_s")


def register_probe(
    probe_outputs: dict[str, Any], prefix: str, tags: dict[str, str], vae: dict[str, Any], run_id: str,
    tracking_uri: str, dedupe_key: str,
) -> dict[str, Any]:
    """Register the probe saved by the train_probe step (with its VAE as a second artifact).

    Args:
        probe_outputs: the train_probe step's outputs (``model_dir``, ``mlflow_run_id``, metrics).
        tags: the register step's lineage tags (data fingerprint, config, commit, ...).
        vae: ``register_model``'s result for the VAE the probe reads (``name``, ``version``).

    Returns:
        ``register_model``'s result (``name``, ``version``, ``model_uri``, ``reused``).
    """
    from vidgen_core.tracking.registry import register_model

    probe_tags = {
        **tags, "train_run_id": probe_outputs.get("mlflow_run_id", ""),
        "vae_model_name": vae["name"], "vae_model_version": str(vae["version"]),
        **{k: repr(float(probe_outputs[k])) for k in PROBE_TAGS if isinstance(probe_outputs.get(k), (int, float))},
    }
    return register_model(
        "probe", probe_outputs["model_dir"], f"{prefix}-probe", probe_tags, run_id=run_id,
        set_candidate=False, tracking_uri=tracking_uri, dedupe_key=dedupe_key,
    )
