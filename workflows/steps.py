"""Step definitions: thin calls into vidgen_core, one function per step.

Each step is ``run(cfg, inputs, ctx) -> outputs``: ``inputs`` maps upstream
step names to their outputs, outputs are JSON-able (paths, counts, metrics).
Steps run inside Ray tasks; they log to their own MLflow child run through an
explicit client (``ctx.run_id``), never through global MLflow state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidgen_core.config import PipelineConfig
from vidgen_core.errors import UserError


@dataclass(frozen=True)
class StepContext:
    """What a step knows about where it runs.

    Attributes:
        name: step name.
        workdir: absolute work directory of the pipeline.
        out_dir: absolute directory owned by this step and fingerprint.
        tracking_uri: MLflow tracking URI (absolute).
        run_id: this step's MLflow child run.
        pipeline_run_id: the parent MLflow run.
        fingerprint: this step's fingerprint.
        upstream_fingerprints: fingerprints of the steps it depends on.
        code_version: hash of the package sources the executor runs
            (:func:`workflows.dag.code_version`), recorded with registered models.
    """

    name: str
    workdir: str
    out_dir: str
    tracking_uri: str
    run_id: str
    pipeline_run_id: str
    fingerprint: str
    upstream_fingerprints: dict[str, str]
    code_version: str = ""

    def client(self):  # -> mlflow.MlflowClient, imported lazily (MLflow is an edge adapter)
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        from vidgen_core.tracking.artifacts import log_metrics

        log_metrics(self.client(), self.run_id, metrics)


def synth(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Generate the moving-shapes videos, or pass a user-given source through."""
    if cfg.data.source:
        source = cfg.data.source
        if "://" not in source and not Path(source).exists():
            raise UserError(f"data.source '{source}' does not exist; point it at a folder of videos")
        return {"source": source, "generated": False}
    from vidgen_core.video.synth import generate_dataset

    videos = generate_dataset(cfg.synth, os.path.join(ctx.out_dir, "videos"))
    ctx.log_metrics({"num_videos": len(videos), "num_frames": sum(v.num_frames for v in videos)})
    return {"source": os.path.join(ctx.out_dir, "videos"), "generated": True, "num_videos": len(videos)}


def ingest(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Decode videos into Parquet clip shards with Ray Data."""
    from vidgen_core.data import schema
    from vidgen_core.data.ingest import run_ingest

    shard_dir = os.path.join(ctx.out_dir, "shards")
    manifest = run_ingest(inputs["synth"]["source"], shard_dir, cfg.ingest, cfg.data, progress_key=ctx.run_id)
    client = ctx.client()
    client.log_artifact(ctx.run_id, os.path.join(shard_dir, schema.MANIFEST_NAME))
    client.log_artifact(ctx.run_id, os.path.join(shard_dir, schema.ERRORS_NAME))
    counts = {f"clips_{split}": n for split, n in manifest["clips_per_split"].items()}
    ctx.log_metrics(
        {
            "num_inputs": manifest["num_inputs"],
            "num_clips": manifest["num_clips"],
            "num_files_with_errors": manifest["num_files_with_errors"],
            **counts,
        }
    )
    return {
        "shard_dir": shard_dir,
        "manifest_fingerprint": manifest["fingerprint"],
        "num_clips": manifest["num_clips"],
        "clips_per_split": manifest["clips_per_split"],
        "num_files_with_errors": manifest["num_files_with_errors"],
    }


def _storage(ctx: StepContext) -> str:
    return os.path.join(ctx.workdir, "ray_results")


def train_vae(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Train the video VAE with Ray Train; checkpoints resume under the same fingerprint."""
    from vidgen_core.train.ray_train import train_vae_ray

    result = train_vae_ray(
        cfg,
        shard_dir=inputs["ingest"]["shard_dir"],
        out_dir=os.path.join(ctx.out_dir, "model"),
        storage_path=_storage(ctx),
        run_name=f"train_vae-{ctx.fingerprint}",
        tracking_uri=ctx.tracking_uri,
        mlflow_run_id=ctx.run_id,
    )
    return {**result, "mlflow_run_id": ctx.run_id}


def train_gan(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Train the latent GAN on the frozen VAE with Ray Train."""
    from vidgen_core.train.ray_train import train_gan_ray

    result = train_gan_ray(
        cfg,
        shard_dir=inputs["ingest"]["shard_dir"],
        vae_dir=inputs["train_vae"]["model_dir"],
        out_dir=os.path.join(ctx.out_dir, "model"),
        storage_path=_storage(ctx),
        run_name=f"train_gan-{ctx.fingerprint}",
        tracking_uri=ctx.tracking_uri,
        mlflow_run_id=ctx.run_id,
    )
    return {**result, "mlflow_run_id": ctx.run_id}


def train_judge(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Train the in-domain judge (a small video classifier) on the labelled train split.

    Unlabelled data (any clip with label -1, or fewer than two classes) has no
    judge; evaluation then uses VAE-encoder features and says so.
    """
    from vidgen_core.data.readers import load_clips
    from vidgen_core.data.schema import read_manifest
    from vidgen_core.eval.judge import train_judge as fit_judge
    from vidgen_core.models.io import save_model

    shard_dir = inputs["ingest"]["shard_dir"]
    names = list(read_manifest(shard_dir).get("label_names") or [])
    train, test = load_clips(shard_dir, "train"), load_clips(shard_dir, "test")
    if len(names) < 2 or len(train[1]) == 0 or (train[1] < 0).any() or (test[1] < 0).any():
        reason = "the clips are not labelled with at least two classes: GAN figures use VAE-encoder features"
        ctx.client().set_tag(ctx.run_id, "vidgen.judge", reason)
        return {"judge_dir": None, "reason": reason}
    result = fit_judge(train[0], train[1], len(names), cfg.judge, test=test if len(test[0]) else None)
    judge_dir = os.path.join(ctx.out_dir, "judge")
    save_model(result.judge, "judge", {"width": cfg.judge.width}, judge_dir, extra={"num_classes": len(names), "label_names": names})
    metrics = {"judge_train_accuracy": result.train_accuracy, "judge_test_accuracy": result.test_accuracy}
    ctx.log_metrics(metrics)
    return {"judge_dir": judge_dir, **metrics}


def train_probe(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Linear probes + retrieval on VAE latents vs pooled pixels (logic: vidgen_core.uses.probe)."""
    from vidgen_core.tracking.artifacts import log_json
    from vidgen_core.uses.probe import ProbeSkipped, train_and_evaluate

    try:
        result = train_and_evaluate(inputs["ingest"]["shard_dir"], inputs["train_vae"]["model_dir"], ctx.out_dir, cfg.probe)
    except ProbeSkipped as exc:  # e.g. unlabelled videos: nothing to probe, the rest of the pipeline stands
        return {"skipped": str(exc)}
    ctx.log_metrics(result.metrics)
    log_json(ctx.client(), ctx.run_id, result.metrics, "probe_report.json")
    return {**result.metrics, "model_dir": result.model_dir, "mlflow_run_id": ctx.run_id}


def codec_eval(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Fit the codec's probability model on train latents; RD curves and BD-rate against libx264 on the test split."""
    from vidgen_core.codec.evaluate import fit_and_evaluate

    result = fit_and_evaluate(inputs["train_vae"]["model_dir"], inputs["ingest"]["shard_dir"], cfg.codec, ctx.out_dir)
    client = ctx.client()
    ctx.log_metrics(result.metrics)
    client.log_artifact(ctx.run_id, result.plot, artifact_path="plots")
    client.log_artifact(ctx.run_id, result.csv, artifact_path="codec")
    client.log_artifact(ctx.run_id, result.json, artifact_path="codec")
    client.log_artifact(ctx.run_id, os.path.join(result.codec_dir, "codec.json"), artifact_path="codec")
    client.set_tag(ctx.run_id, "vidgen.codec_summary", result.summary[:5000])
    return {"codec_dir": result.codec_dir, "summary": result.summary, **result.metrics}


def evaluate(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """VAE reconstruction figures and judge-based GAN figures, each beside its baselines; previews for people."""
    from vidgen_core.eval.evaluate import evaluate_vae
    from vidgen_core.eval.gan_eval import evaluate_gan
    from vidgen_core.tracking.artifacts import log_json
    from vidgen_core.tracking.previews import log_previews

    shard_dir, vae_dir = inputs["ingest"]["shard_dir"], inputs["train_vae"]["model_dir"]
    judge = inputs.get("train_judge", {})
    metrics = evaluate_vae(vae_dir, shard_dir, cfg.eval)
    metrics["vae_psnr_gain_db"] = metrics["vae_psnr"] - metrics["baseline_psnr"]
    metrics["vae_ssim_gain"] = metrics["vae_ssim"] - metrics["baseline_ssim"]
    metrics.update(evaluate_gan(inputs["train_gan"]["model_dir"], vae_dir, shard_dir, cfg.eval, judge.get("judge_dir")))
    if judge.get("judge_test_accuracy") is not None:
        metrics["judge_test_accuracy"] = judge["judge_test_accuracy"]
    client = ctx.client()
    ctx.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    client.set_tag(ctx.run_id, "vidgen.gan_feature_space", str(metrics["gan_feature_space"]))
    log_previews(client, ctx.run_id, shard_dir, vae_dir, inputs["train_gan"]["model_dir"],
                 inputs["train_vae"].get("mlflow_run_id"), ctx.out_dir)
    log_json(client, ctx.run_id, metrics, "eval_report.json")
    return metrics


def register(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Register the VAE + GAN pair, then move ``candidate``/``champion`` as the registry policy decides.

    The pair's identity (its two training runs) is the dedupe key: re-running
    register for the same trained models after a crash adds no version.
    """
    from vidgen_core.config import EVAL_METRICS, fingerprint
    from vidgen_core.tracking.artifacts import log_json
    from vidgen_core.tracking.mlflow_setup import store_lock
    from vidgen_core.tracking.promotion import apply_decision, current_champion, decide
    from vidgen_core.tracking.registry import register_model

    metrics = inputs["evaluate"]
    vae_run, gan_run = inputs["train_vae"].get("mlflow_run_id", ""), inputs["train_gan"].get("mlflow_run_id", "")
    tags = {
        "data_manifest_fingerprint": inputs["ingest"]["manifest_fingerprint"],
        "config_hash": fingerprint(cfg),
        "pipeline_run_id": ctx.pipeline_run_id,
        "register_run_id": ctx.run_id,
        "git_commit": _git_commit(),
        "code_version": ctx.code_version,
        "train_vae_fingerprint": ctx.upstream_fingerprints.get("train_vae", ""),
        "train_gan_fingerprint": ctx.upstream_fingerprints.get("train_gan", ""),
        "ingest_config": cfg.ingest.model_dump_json(),  # how to cut clips for this model (vidgen embed)
        # Full precision: the champion comparison reads these back (a rounded tag would
        # let the very same VAE "beat" itself by the rounding error).
        **{m: repr(float(metrics[m])) for m in EVAL_METRICS if isinstance(metrics.get(m), (int, float))},
    }
    pair = {"vae_run": vae_run, "gan_run": gan_run, "vae_fp": tags["train_vae_fingerprint"],
            "gan_fp": tags["train_gan_fingerprint"]}
    prefix = cfg.registry.model_prefix
    codec = inputs.get("codec_eval") or {}
    vae_dir = _vae_with_codec(inputs["train_vae"]["model_dir"], codec.get("codec_dir"), ctx.out_dir)
    codec_tags = {k: repr(float(codec[k])) for k in ("codec_bd_rate", "codec_bd_psnr") if isinstance(codec.get(k), (int, float))}
    vae = register_model(
        "vae", vae_dir, f"{prefix}-vae", {**tags, **codec_tags, "train_run_id": vae_run},
        run_id=ctx.run_id, set_candidate=False, tracking_uri=ctx.tracking_uri,
        # The probability model is part of what a .vgc file needs: a new one is a new version.
        dedupe_key=fingerprint({"kind": "vae", **pair, "codec_fp": ctx.upstream_fingerprints.get("codec_eval", "")}),
    )
    gan = register_model(
        "gan", inputs["train_gan"]["model_dir"], f"{prefix}-gan",
        {**tags, "train_run_id": gan_run, "vae_model_version": str(vae["version"])},
        run_id=ctx.run_id, vae_dir=inputs["train_vae"]["model_dir"], set_candidate=False,
        tracking_uri=ctx.tracking_uri, dedupe_key=fingerprint({"kind": "gan", **pair}),
    )
    versions = {vae["name"]: str(vae["version"]), gan["name"]: str(gan["version"])}
    has_probe = bool(inputs.get("train_probe", {}).get("model_dir"))
    if has_probe:  # the probe reads this VAE: registered with it, promoted with it
        from vidgen_core.uses.registration import register_probe

        probe = register_probe(inputs["train_probe"], prefix, tags, vae, ctx.run_id, ctx.tracking_uri,
                               fingerprint({"kind": "probe", **pair, "probe_fp": ctx.upstream_fingerprints.get("train_probe", "")}))
        versions[probe["name"]] = str(probe["version"])
    client = ctx.client()
    # Read-compare-move under a lock: two pipelines registering at once must not both
    # read the old champion and each move the alias.
    with store_lock(ctx.tracking_uri):
        champion = current_champion(client, vae["name"], cfg.registry.champion_metric)
        decision = decide(metrics, cfg.registry, champion, str(vae["version"]), tags["data_manifest_fingerprint"])
        apply_decision(client, versions, decision)
    client.set_tag(ctx.run_id, "vidgen.decision", decision.reason[:5000])
    log_json(client, ctx.run_id, {**decision.as_dict(), "vae": vae, "gan": gan}, "promotion.json")
    return {
        "vae": vae, "gan": gan, **({"probe": probe} if has_probe else {}), "gate_passed": decision.gate_passed, "champion_moved": decision.promote,
        "decision": decision.reason, "champion_before": decision.champion_version,
        "is_champion": decision.promote or decision.champion_version == str(vae["version"]),
    }


def _vae_with_codec(model_dir: str, codec_dir: str | None, out_dir: str) -> str:
    """The VAE's model directory with the codec's ``codec.json`` beside its weights (a copy in ``out_dir``).

    The registered VAE then carries its probability model: `vidgen compress` needs both,
    and a file decodes only with the pair that wrote it.
    """
    import shutil

    if not codec_dir:
        return model_dir
    from vidgen_core.codec.prior import PRIOR_FILE

    dst = os.path.join(out_dir, "vae_with_codec")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(model_dir, dst)
    shutil.copy2(os.path.join(codec_dir, PRIOR_FILE), os.path.join(dst, PRIOR_FILE))
    return dst


def _git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
