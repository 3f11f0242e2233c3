"""Registration with lineage: what the register step records on each model version, and the decision.

Every version carries where it came from (data manifest, config hash, pipeline
and training runs, git commit, code version, step fingerprints, the ingest
settings a user of the model needs) and its evaluation figures at full
precision; the promotion policy (:mod:`vidgen_core.tracking.promotion`) then
moves the ``candidate``/``champion`` aliases under the store's lock.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from vidgen_core.config import EVAL_METRICS, PipelineConfig, fingerprint
from vidgen_core.tracking.artifacts import log_json
from vidgen_core.tracking.mlflow_setup import store_lock
from vidgen_core.tracking.promotion import apply_decision, current_champion, decide
from vidgen_core.tracking.registry import register_model
from vidgen_core.uses.registration import register_probe


def register_pair(
    cfg: PipelineConfig, inputs: dict[str, Any], *, run_id: str, pipeline_run_id: str, tracking_uri: str,
    out_dir: str, upstream_fingerprints: dict[str, str], code_version: str,
) -> dict[str, Any]:
    """Register the VAE + GAN pair (and the probe that reads the VAE), then move
    ``candidate``/``champion`` as the registry policy decides.

    Args:
        cfg: the pipeline config (registry policy, model prefix, ingest settings for lineage).
        inputs: the outputs of ingest, train_vae, train_gan, evaluate, train_probe and codec_eval.
        run_id: the register step's MLflow run (versions link to it; the decision is tagged on it).
        pipeline_run_id, code_version, upstream_fingerprints: lineage recorded on every version.
        tracking_uri: the MLflow store; out_dir: where the VAE + codec bundle is assembled.
    Returns:
        ``{"vae", "gan"[, "probe"], "gate_passed", "champion_moved", "decision", "champion_before", "is_champion"}``.

    The pair's identity (its two training runs) is the dedupe key: re-running
    register for the same trained models after a crash adds no version.
    """
    from mlflow import MlflowClient

    metrics = inputs["evaluate"]
    vae_run, gan_run = inputs["train_vae"].get("mlflow_run_id", ""), inputs["train_gan"].get("mlflow_run_id", "")
    tags = {
        "data_manifest_fingerprint": inputs["ingest"]["manifest_fingerprint"],
        "config_hash": fingerprint(cfg),
        "pipeline_run_id": pipeline_run_id,
        "register_run_id": run_id,
        "git_commit": git_commit(),
        "code_version": code_version,
        "train_vae_fingerprint": upstream_fingerprints.get("train_vae", ""),
        "train_gan_fingerprint": upstream_fingerprints.get("train_gan", ""),
        "ingest_config": cfg.ingest.model_dump_json(),  # how to cut clips for this model (vidgen embed)
        # Full precision: the champion comparison reads these back (a rounded tag would
        # let the very same VAE "beat" itself by the rounding error).
        **{m: repr(float(metrics[m])) for m in EVAL_METRICS if isinstance(metrics.get(m), (int, float))},
    }
    pair = {"vae_run": vae_run, "gan_run": gan_run, "vae_fp": tags["train_vae_fingerprint"],
            "gan_fp": tags["train_gan_fingerprint"]}
    prefix = cfg.registry.model_prefix
    codec = inputs.get("codec_eval") or {}
    vae_dir = vae_with_codec(inputs["train_vae"]["model_dir"], codec.get("codec_dir"), out_dir)
    codec_tags = {k: repr(float(codec[k])) for k in ("codec_bd_rate", "codec_bd_psnr") if isinstance(codec.get(k), (int, float))}
    vae = register_model(
        "vae", vae_dir, f"{prefix}-vae", {**tags, **codec_tags, "train_run_id": vae_run},
        run_id=run_id, set_candidate=False, tracking_uri=tracking_uri,
        # The probability model is part of what a .vgc file needs: a new one is a new version.
        dedupe_key=fingerprint({"kind": "vae", **pair, "codec_fp": upstream_fingerprints.get("codec_eval", "")}),
    )
    gan = register_model(
        "gan", inputs["train_gan"]["model_dir"], f"{prefix}-gan",
        {**tags, "train_run_id": gan_run, "vae_model_version": str(vae["version"])},
        run_id=run_id, vae_dir=inputs["train_vae"]["model_dir"], set_candidate=False,
        tracking_uri=tracking_uri, dedupe_key=fingerprint({"kind": "gan", **pair}),
    )
    versions = {vae["name"]: str(vae["version"]), gan["name"]: str(gan["version"])}
    has_probe = bool(inputs.get("train_probe", {}).get("model_dir"))
    if has_probe:  # the probe reads this VAE: registered with it, promoted with it
        probe = register_probe(inputs["train_probe"], prefix, tags, vae, run_id, tracking_uri,
                               fingerprint({"kind": "probe", **pair, "probe_fp": upstream_fingerprints.get("train_probe", "")}))
        versions[probe["name"]] = str(probe["version"])
    client = MlflowClient(tracking_uri)
    # Read-compare-move under a lock: two pipelines registering at once must not both
    # read the old champion and each move the alias.
    with store_lock(tracking_uri):
        champion = current_champion(client, vae["name"], cfg.registry.champion_metric)
        decision = decide(metrics, cfg.registry, champion, str(vae["version"]), tags["data_manifest_fingerprint"])
        apply_decision(client, versions, decision)
    client.set_tag(run_id, "vidgen.decision", decision.reason[:5000])
    log_json(client, run_id, {**decision.as_dict(), "vae": vae, "gan": gan}, "promotion.json")
    return {
        "vae": vae, "gan": gan, **({"probe": probe} if has_probe else {}), "gate_passed": decision.gate_passed, "champion_moved": decision.promote,
        "decision": decision.reason, "champion_before": decision.champion_version,
        "is_champion": decision.promote or decision.champion_version == str(vae["version"]),
    }


def vae_with_codec(model_dir: str, codec_dir: str | None, out_dir: str) -> str:
    """The VAE's model directory with the codec's ``codec.json`` beside its weights (a copy in ``out_dir``).

    The registered VAE then carries its probability model: `vidgen compress` needs both,
    and a file decodes only with the pair that wrote it.
    """
    if not codec_dir:
        return model_dir
    from vidgen_core.codec.prior import PRIOR_FILE

    dst = os.path.join(out_dir, "vae_with_codec")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(model_dir, dst)
    shutil.copy2(os.path.join(codec_dir, PRIOR_FILE), os.path.join(dst, PRIOR_FILE))
    return dst


def git_commit() -> str:
    """The commit of the checkout vidgen runs from, or "unknown" (an installed package, no git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
