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


TRAIN_STORAGE = "ray_results"  # Ray Train's runs (checkpoints) under the work dir, one per step and fingerprint


def _storage(ctx: StepContext) -> str:
    return os.path.join(ctx.workdir, TRAIN_STORAGE)


def step_out_dir(workdir: str, step: str, fingerprint: str) -> str:
    """The folder a run of ``step`` at ``fingerprint`` owns (``StepContext.out_dir``)."""
    return os.path.join(workdir, "steps", f"{step}-{fingerprint}")


def earlier_outputs(workdir: str, step: str, fingerprint: str) -> list[str]:
    """Folders an earlier run of ``step`` at ``fingerprint`` left: its outputs and its Ray Train checkpoints.

    A forced step is removed these first: Ray Train resumes a run whose storage
    holds a checkpoint, so a finished one would be "recomputed" by loading it.
    """
    return [step_out_dir(workdir, step, fingerprint), os.path.join(workdir, TRAIN_STORAGE, f"{step}-{fingerprint}")]


def _tag_numerics(ctx: StepContext, result: dict[str, Any]) -> None:
    """Tag the training run with what ``precision: auto`` became (bf16 autocast on a GPU or an AMX CPU)."""
    if result.get("numerics"):
        ctx.client().set_tag(ctx.run_id, "vidgen.numerics", result["numerics"])


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
    _tag_numerics(ctx, result)
    from vidgen_core.uses.embed import record_embedding_center

    # The clip embedding's centre travels inside the VAE (see vidgen_core/uses/features.py).
    record_embedding_center(result["model_dir"], inputs["ingest"]["shard_dir"])
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
    _tag_numerics(ctx, result)
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
    from vidgen_core.tracking.artifacts import metric_key

    shard_dir = inputs["ingest"]["shard_dir"]
    names = list(read_manifest(shard_dir).get("label_names") or [])
    train, test = load_clips(shard_dir, "train"), load_clips(shard_dir, "test")
    if len(names) < 2 or len(train[1]) == 0 or (train[1] < 0).any() or (test[1] < 0).any():
        reason = "the clips are not labelled with at least two classes: GAN figures use VAE-encoder features"
        ctx.client().set_tag(ctx.run_id, "vidgen.judge", reason)
        return {"judge_dir": None, "reason": reason}
    if cfg.judge.keep_freed_memory:
        from vidgen_core.train.allocator import keep_freed_memory

        keep_freed_memory()  # this step's task is a process of its own (max_calls=1)
    result = fit_judge(train[0], train[1], len(names), cfg.judge, test=test if len(test[0]) else None, names=names)
    judge_dir = os.path.join(ctx.out_dir, "judge")
    model_config = {"width": cfg.judge.width, "standardise": cfg.judge.standardise, "members": cfg.judge.ensemble}
    save_model(result.judge, "judge", model_config, judge_dir, extra={"num_classes": len(names), "label_names": names})
    metrics = {"judge_train_accuracy": result.train_accuracy, "judge_test_accuracy": result.test_accuracy}
    if len(result.member_test_accuracy) > 1:  # how far one judge alone would have been from the ensemble
        metrics.update(judge_member_test_accuracy_min=min(result.member_test_accuracy),
                       judge_member_test_accuracy_max=max(result.member_test_accuracy))
    by_class = result.test_by_class
    ctx.log_metrics({**metrics, **{f"judge_test_accuracy_{metric_key(name)}": acc for name, (acc, _) in by_class.items()}})
    return {"judge_dir": judge_dir, **metrics, "judge_test_by_class": by_class}


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
    from vidgen_core.eval.judge import reliability_warning, weak_classes_warning
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
    warning = reliability_warning(judge.get("judge_test_accuracy"), cfg.eval.min_judge_accuracy)
    client = ctx.client()
    if warning is not None:
        metrics["judge_warning"] = warning
        client.set_tag(ctx.run_id, "vidgen.judge_warning", warning)
    # Steps cached before the per-class figures existed have none: then nothing is said.
    class_warning = weak_classes_warning(judge.get("judge_test_by_class"), cfg.eval.min_judge_accuracy)
    if class_warning is not None:
        metrics["judge_class_warning"] = class_warning
        client.set_tag(ctx.run_id, "vidgen.judge_class_warning", class_warning)
    ctx.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    client.set_tag(ctx.run_id, "vidgen.gan_feature_space", str(metrics["gan_feature_space"]))
    log_previews(client, ctx.run_id, shard_dir, vae_dir, inputs["train_gan"]["model_dir"],
                 inputs["train_vae"].get("mlflow_run_id"), ctx.out_dir)
    log_json(client, ctx.run_id, metrics, "eval_report.json")
    return metrics


def register(cfg: PipelineConfig, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Register the VAE + GAN (+ probe) of this run and move ``candidate``/``champion`` as the
    registry policy decides (:func:`vidgen_core.tracking.lineage.register_pair`)."""
    from vidgen_core.tracking.lineage import register_pair

    return register_pair(
        cfg, inputs, run_id=ctx.run_id, pipeline_run_id=ctx.pipeline_run_id, tracking_uri=ctx.tracking_uri,
        out_dir=ctx.out_dir, upstream_fingerprints=ctx.upstream_fingerprints, code_version=ctx.code_version,
    )
