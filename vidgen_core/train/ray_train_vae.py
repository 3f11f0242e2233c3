"""Ray Train adapter for the VAE: :func:`train_vae_ray` (driver) and its ``train_loop_per_worker``.

The worker turns its config dict back into a typed :class:`PipelineConfig` on
its first line, prepares the model (device, memory format, DDP through
``prepare_model``, optional ``torch.compile``) and calls the very
:func:`~vidgen_core.train.fit_vae.fit_vae` that the unit tests run without Ray.
Rank 0 saves the final model and logs a reconstruction video.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vidgen_core.config import PipelineConfig, config_dict
from vidgen_core.train.ray_driver import JobArgs, check_batches_fit, check_resources, local_abs, read_manifest_or_none, read_train_split, run_trainer
from vidgen_core.train.ray_tracker import Rank0Tracker, summary
from vidgen_core.train.ray_worker import PREVIEW_CLIPS, shard_batches, worker_context
from vidgen_core.train.ray_state import StatusFile, checkpoint_hook, resume_state

if TYPE_CHECKING:
    import ray.data


def train_vae_ray(
    cfg: PipelineConfig,
    shard_dir: str,
    out_dir: str,
    storage_path: str,
    run_name: str,
    tracking_uri: str | None,
    mlflow_run_id: str | None,
    *,
    dataset: ray.data.Dataset | None = None,
) -> dict[str, Any]:
    """Train the VAE with Ray Train (DDP over ``cfg.train_vae.num_workers`` workers).

    Args:
        cfg: the run's config (``vae``, ``train_vae`` are used).
        shard_dir: clip shards; the ``train`` split is read with ``read_split``.
        out_dir: local absolute directory for the final model (config.json + weights.safetensors).
        storage_path, run_name: Ray Train run directory; re-using them resumes from the last checkpoint.
        tracking_uri, mlflow_run_id: when the run id is given, rank 0 logs metrics and a
            ``samples/vae_recon.mp4`` (original | reconstruction) to that MLflow run.
        dataset: a ready Ray Dataset with ``frames``/``label`` columns instead of ``shard_dir``'s split (tests).
    Returns:
        {"model_dir", "steps", "start_step", "final_loss", "metrics", "steady_step_time_s",
        "torch_threads", "numerics", "checkpoint", "run_path"}.
    """
    manifest = read_manifest_or_none(shard_dir)
    check_resources(cfg, cfg.train_vae, "train_vae")
    if dataset is None:
        check_batches_fit((manifest or {}).get("clips_per_split", {}).get("train"), cfg.train_vae, "train_vae")
        dataset = read_train_split(shard_dir, manifest, cfg.train_vae.seed)
    args = JobArgs(
        out_dir=local_abs(out_dir), tracking_uri=tracking_uri, mlflow_run_id=mlflow_run_id,
        shard_dir=local_abs(shard_dir) if manifest is not None else None,
    )
    return run_trainer(vae_worker, cfg, cfg.train_vae, args, dataset, storage_path, run_name)


def vae_worker(config: dict) -> dict[str, Any]:
    """train_loop_per_worker for the VAE."""
    cfg, args = PipelineConfig.model_validate(config["pipeline"]), JobArgs(**config["args"])
    import ray.train.torch

    from vidgen_core.models.io import save_model, unwrap
    from vidgen_core.models.patch_disc import PatchDiscriminator3D
    from vidgen_core.models.vae import VideoVAE
    from vidgen_core.train.fit_vae import fit_vae
    from vidgen_core.train.precision import maybe_compile, resolve_numerics

    tc = cfg.train_vae
    wc = worker_context(tc.torch_threads, tc.keep_freed_memory)
    numerics = resolve_numerics(tc, wc.device)
    torch.manual_seed(tc.seed)  # DDP broadcasts rank 0's initial weights anyway
    model = maybe_compile(ray.train.torch.prepare_model(numerics.prepare(VideoVAE(cfg.vae))), tc.compile)
    disc = None
    if tc.adv_weight > 0:
        disc = PatchDiscriminator3D(tc.adv_disc_channels)
        disc = maybe_compile(ray.train.torch.prepare_model(numerics.prepare(disc)), tc.compile)
    state, unregistered = resume_state(wc.device, args.run_dir)
    tracker = Rank0Tracker(args, wc.rank, wc.world, total_steps=tc.steps)
    status = StatusFile(args.status_dir, wc.rank, state.step if state is not None else 0)

    batches = shard_batches(tc, "train_vae", wc.rank, wc.world)
    if state is not None and state.data is not None:
        batches.load_state_dict(state.data)  # before peeking: the epoch opens once, at the resumed position
    # Validation clips (rank 0, read with pyarrow, never from the training stream) score
    # the model every sample_every steps: quality over training is what a user tunes by.
    val = validation_clips(args.shard_dir) if wc.rank == 0 else None
    preview = batches.peek()[0][:PREVIEW_CLIPS].cpu().clone()  # shapes of the saved model; no extra batch pulled
    # A dataset handed in without shards on disk has no validation split: score the first
    # training clips instead, and say so in the file name.
    source = "val"
    if wc.rank == 0 and val is None:
        val, source = preview.numpy().astype(np.uint8, copy=False), "train"

    def on_log(step: int, metrics: dict[str, float]) -> None:
        tracker.on_log(step, metrics)
        status.write("progress", step)

    def on_sample(step: int, vae: torch.nn.Module) -> None:
        if tracker.enabled and val is not None:
            figures, strip = score_on_validation(vae, val, wc.device)
            if source == "val":  # figures on training clips would flatter the model
                tracker.log_metrics(step, figures)
            tracker.log_png(strip, f"vae_recon_{source}.png", f"previews/step_{step:08d}")

    fit_vae(
        cfg.vae, tc, batches, on_log, model, device=wc.device, state=state,
        on_checkpoint=checkpoint_hook(wc.rank, tracker, unregistered), on_sample=on_sample if wc.rank == 0 else None, disc=disc,
    )
    status.write("done", tc.steps)

    result = summary(tc, state, tracker, args.out_dir, numerics.describe())
    if wc.rank == 0:
        vae = unwrap(model)
        clip_len, size = int(preview.shape[1]), int(preview.shape[2])
        extra = {"clip_len": clip_len, "size": size, "latent_shape": list(vae.latent_shape(clip_len, size)), "steps": tc.steps}
        save_model(vae, "vae", config_dict(cfg.vae), args.out_dir, extra=extra)
        if tracker.enabled and val is not None:
            figures, strip = score_on_validation(vae, val, wc.device)
            if source == "val":
                tracker.log_metrics(tc.steps, figures)
            tracker.log_png(strip, f"vae_recon_{source}.png")
    tracker.close()
    return result


VALIDATION_CLIPS = 32


def validation_clips(shard_dir: str | None) -> np.ndarray | None:
    """Up to VALIDATION_CLIPS uint8 val clips (N, T, H, W, 3) (test clips if there is no val split), or None.

    Drawn round-robin over the split's videos, so the preview strip and the scores
    cover as many videos as there are clips (not 32 windows of the first video).
    """
    if shard_dir is None:
        return None
    from vidgen_core.data.readers import clips_across_videos
    from vidgen_core.data.schema import read_manifest

    if not read_manifest(shard_dir).get("shards"):  # a dataset handed in directly: nothing on disk to score
        return None
    for split in ("val", "test"):
        frames, _ = clips_across_videos(shard_dir, split, VALIDATION_CLIPS)
        if len(frames):
            return frames
    return None


def score_on_validation(vae: torch.nn.Module, clips: np.ndarray, device: torch.device) -> tuple[dict[str, float], np.ndarray]:
    """({val_psnr, val_ssim, val_colour_ratio}, recon strip PNG of the first PREVIEW_CLIPS) for the current weights."""
    from vidgen_core.eval.inference import reconstruct
    from vidgen_core.eval.metrics import psnr, saturation_ratio, ssim
    from vidgen_core.eval.previews import recon_strip

    was_training = vae.training
    vae.eval()
    recon = reconstruct(vae, clips, 16)
    vae.train(was_training)
    figures = {"val_psnr": psnr(recon, clips), "val_ssim": ssim(recon, clips), "val_colour_ratio": saturation_ratio(recon, clips)}
    return figures, recon_strip(clips[:PREVIEW_CLIPS], recon[:PREVIEW_CLIPS])
