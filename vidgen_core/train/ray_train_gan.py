"""Ray Train adapter for the GAN: :func:`train_gan_ray` (driver) and its ``train_loop_per_worker``.

Latent space (default): every worker loads the frozen VAE from ``vae_dir``
(never wrapped, never stepped) and the GAN learns its latents. Pixel space:
the VAE is not loaded for training. Rank 0 saves the serving generator (the
EMA weights when ``gan.ema_decay > 0``) as the ``gan`` model, logs sample
videos and records guardrail rollbacks.
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


def train_gan_ray(
    cfg: PipelineConfig,
    shard_dir: str,
    vae_dir: str,
    out_dir: str,
    storage_path: str,
    run_name: str,
    tracking_uri: str | None,
    mlflow_run_id: str | None,
    *,
    dataset: ray.data.Dataset | None = None,
) -> dict[str, Any]:
    """Train the GAN (latent GAN on the frozen VAE in ``vae_dir``, or pixel GAN) with Ray Train.

    The class count is ``len(manifest["label_names"])`` of ``shard_dir``'s manifest
    (0 without one: unconditional). Arguments and return value as in
    :func:`~vidgen_core.train.ray_train_vae.train_vae_ray`, plus ``latent_scale``;
    the artifact is ``samples/gan_samples.mp4``. ``vae_dir`` is recorded with the
    model in both spaces (the registry serves the pair).
    """
    manifest = read_manifest_or_none(shard_dir)
    check_resources(cfg, cfg.train_gan, "train_gan")
    if dataset is None:
        check_batches_fit((manifest or {}).get("clips_per_split", {}).get("train"), cfg.train_gan, "train_gan")
        dataset = read_train_split(shard_dir, manifest, cfg.train_gan.seed)
    label_names = tuple((manifest or {}).get("label_names") or ())
    args = JobArgs(
        out_dir=local_abs(out_dir),
        tracking_uri=tracking_uri,
        mlflow_run_id=mlflow_run_id,
        vae_dir=local_abs(vae_dir),
        num_classes=len(label_names),
        label_names=label_names,
    )
    return run_trainer(gan_worker, cfg, cfg.train_gan, args, dataset, storage_path, run_name)


def gan_worker(config: dict) -> dict[str, Any]:
    """train_loop_per_worker for the GAN."""
    cfg, args = PipelineConfig.model_validate(config["pipeline"]), JobArgs(**config["args"])
    import ray.train.torch

    from vidgen_core.models.gan import build_discriminator, build_generator
    from vidgen_core.models.io import load_model, save_model
    from vidgen_core.models.vae import video_to_frames
    from vidgen_core.train.fit_gan import encode_latents, fit_gan, pixel_d_shape, sample_videos
    from vidgen_core.train.precision import maybe_compile, resolve_numerics

    tc, pixel = cfg.train_gan, cfg.gan.space == "pixel"
    wc = worker_context(tc.torch_threads, tc.keep_freed_memory)
    numerics = resolve_numerics(tc, wc.device)
    vae, _ = load_model(args.vae_dir, device=wc.device) if (args.vae_dir and not pixel) else (None, None)
    state, unregistered = resume_state(wc.device, args.run_dir)
    tracker = Rank0Tracker(args, wc.rank, wc.world, total_steps=tc.steps)
    status = StatusFile(args.status_dir, wc.rank, state.step if state is not None else 0)

    batches = shard_batches(tc, "train_gan", wc.rank, wc.world)
    if state is not None and state.data is not None:
        batches.load_state_dict(state.data)
    first = batches.peek()[0]
    if pixel:
        shape = (3, *first.shape[1:4])
    else:
        shape = tuple(encode_latents(vae, first[:1], wc.device).shape[1:])
    torch.manual_seed(tc.seed)

    def prepare(module: torch.nn.Module) -> torch.nn.Module:
        return maybe_compile(ray.train.torch.prepare_model(numerics.prepare(module)), tc.compile)

    generator = prepare(build_generator(cfg.gan, shape, args.num_classes))
    discriminator = prepare(build_discriminator(cfg.gan, shape, args.num_classes, pixel_d_shape(cfg.gan, vae, shape)))

    def samples(g: torch.nn.Module) -> np.ndarray:
        n = max(PREVIEW_CLIPS, args.num_classes) if g.conditional else PREVIEW_CLIPS
        clips = video_to_frames(sample_videos(g, vae, n, seed=tc.seed, device=wc.device))
        return np.concatenate(list(clips), axis=2)  # side by side

    def on_log(step: int, metrics: dict[str, float]) -> None:
        tracker.on_log(step, metrics)
        status.write("progress", step)

    def on_sample(step: int, g: torch.nn.Module) -> None:
        if tracker.enabled:
            tracker.log_video(samples(g), "gan_samples.mp4", f"samples/step_{step:08d}")

    def on_event(step: int, name: str, info: dict[str, Any]) -> None:
        tracker.on_event(step, name, info)
        status.write(name, step)

    trained = fit_gan(
        cfg.gan, tc, vae if not pixel else None, batches, args.num_classes, on_log,
        generator=generator, discriminator=discriminator, device=wc.device, state=state,
        on_checkpoint=checkpoint_hook(wc.rank, tracker, unregistered), on_sample=on_sample if wc.rank == 0 else None,
        on_event=on_event,
    )
    status.write("done", tc.steps)

    result = summary(tc, state, tracker, args.out_dir, numerics.describe())
    if wc.rank == 0:
        g = trained.serving  # the EMA generator when enabled: what the registry serves
        clip_len, size = int(first.shape[1]), int(first.shape[2])
        extra = {
            "latent_shape": list(shape),
            "num_classes": args.num_classes,
            "label_names": list(args.label_names),
            "latent_scale": float(g.latent_scale),
            "clip_len": clip_len,
            "size": size,
            "vae_dir": args.vae_dir,
            "steps": tc.steps,
            "ema": cfg.gan.ema_decay > 0,
        }
        save_model(g, "gan", config_dict(cfg.gan), args.out_dir, extra=extra)
        result["latent_scale"] = extra["latent_scale"]
        if tracker.enabled:
            tracker.log_video(samples(g), "gan_samples.mp4")
    tracker.close()
    return result
