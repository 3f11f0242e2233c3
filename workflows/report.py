"""The closing summary of `vidgen run`: where to look and what came out."""

from __future__ import annotations

from pathlib import Path

import click

from workflows.executor import PipelineResult


def print_summary(result: PipelineResult, workdir: Path) -> None:
    """Print steps (ran/reused, time), headline metrics, registered versions, how to look."""
    echo = click.echo
    echo("")
    echo(f"vidgen run finished in {result.duration_s:.0f}s · pipeline run {result.pipeline_run_id}")
    for rec in result.steps.values():
        how = "reused" if rec.reused else f"ran {rec.duration_s:6.1f}s"
        echo(f"  {rec.name:<10} {how:<12} run {rec.run_id}")
    ev = result.outputs("evaluate")
    echo(
        f"VAE test PSNR {ev['vae_psnr']:.2f} dB, SSIM {ev['vae_ssim']:.3f} "
        f"(mean-frame baseline {ev['baseline_psnr']:.2f} dB, {ev['baseline_ssim']:.3f}) on {ev['num_test_clips']} clips"
    )
    if "gan_diversity_ratio" in ev:
        echo(
            f"GAN samples vs test clips: std ratio {ev['gan_std_ratio']:.2f}, motion ratio {ev['gan_motion_ratio']:.2f}, "
            f"diversity ratio {ev['gan_diversity_ratio']:.2f}, mean-colour gap {ev['gan_mean_abs_diff']:.1f} levels"
        )
    pr = result.outputs("train_probe") if "train_probe" in result.steps else {}
    if pr.get("skipped"):
        echo(f"probe skipped: {pr['skipped']}")
    elif pr:
        echo(
            f"probe test accuracy latents {pr['probe_latent_accuracy']:.3f} vs pixels {pr['probe_pixel_accuracy']:.3f}; "
            f"retrieval recall@5 {pr['retrieval_latent_recall_at_5']:.3f} vs {pr['retrieval_pixel_recall_at_5']:.3f}, "
            f"mAP {pr['retrieval_latent_map']:.3f} vs {pr['retrieval_pixel_map']:.3f}; embedding {pr['embed_clips_per_s']:.0f} clips/s"
        )
    reg = result.outputs("register")
    for kind in ("vae", "gan", "probe"):
        if kind not in reg:
            continue
        r = reg[kind]
        champion = reg.get("is_champion", reg.get("champion_moved"))
        aliases = [a for a, on in (("candidate", reg["gate_passed"]), ("champion", champion)) if on]
        alias = "".join(f" @{a}" for a in aliases)
        again = " (already registered)" if r.get("reused") else ""
        echo(f"registered {r['name']} version {r['version']}{alias}{again}  ({r['model_uri']})")
    echo(f"decision: {reg['decision']}")
    echo(f"tracking URI: {result.tracking_uri}")
    if result.tracking_uri.startswith("sqlite:"):
        echo(f"look at it:   mlflow ui --backend-store-uri {result.tracking_uri} --port 5000   (then open http://127.0.0.1:5000)")
    echo(f"work dir:     {workdir}")
