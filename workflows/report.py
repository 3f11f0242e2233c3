"""The closing summary of `vidgen run`: where to look and what came out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import click

from vidgen_core.storage import redact
from vidgen_core.tracking.mlflow_setup import run_page_url
from workflows.executor import PipelineResult


def _pixel_spectrum(pr: dict) -> str:
    """The stronger pixel baseline (the embedding's transform on pooled pixels), when the step logged it."""
    if "probe_pixel_spectrum_accuracy" not in pr:
        return ""
    return (f" (pixel spectrum: accuracy {pr['probe_pixel_spectrum_accuracy']:.3f}, "
            f"recall@5 {pr['retrieval_pixel_spectrum_recall_at_5']:.3f})")


def print_summary(result: PipelineResult, workdir: Path, echo: Callable[[str], None] = click.echo) -> None:
    """Print steps (ran/reused, time), headline metrics, registered versions, how to look."""
    echo("")
    echo(f"vidgen run finished in {result.duration_s:.0f}s · pipeline run {result.pipeline_run_id}")
    # One line: each step's run id is in its "started" line above and on the pipeline run.
    echo("steps: " + " · ".join(
        f"{rec.name} {'reused' if rec.reused else f'{rec.duration_s:.0f}s'}" for rec in result.steps.values()
    ))
    ev = result.outputs("evaluate")
    for line in headline_lines(ev):
        echo(line)
    pr = result.outputs("train_probe") if "train_probe" in result.steps else {}
    if pr.get("skipped"):
        echo(f"probe skipped: {pr['skipped']}")
    elif pr:
        echo(
            f"probe test accuracy latents {pr['probe_latent_accuracy']:.3f} vs pixels {pr['probe_pixel_accuracy']:.3f}; "
            f"retrieval recall@5 {pr['retrieval_latent_recall_at_5']:.3f} vs {pr['retrieval_pixel_recall_at_5']:.3f}, "
            f"mAP {pr['retrieval_latent_map']:.3f} vs {pr['retrieval_pixel_map']:.3f}{_pixel_spectrum(pr)}; "
            f"embedding {pr['embed_clips_per_s']:.0f} clips/s"
        )
    codec = result.outputs("codec_eval") if "codec_eval" in result.steps else {}
    if codec.get("summary"):
        echo(f"codec: {codec['summary']}")
    reg = result.outputs("register")
    registered = []
    for kind in ("vae", "gan", "probe"):
        if kind not in reg:
            continue
        r = reg[kind]
        champion = reg.get("is_champion", reg.get("champion_moved"))
        aliases = [a for a, on in (("candidate", reg["gate_passed"]), ("champion", champion)) if on]
        alias = "".join(f" @{a}" for a in aliases)
        again = " (already registered)" if r.get("reused") else ""
        registered.append(f"registered {r['name']} version {r['version']}{alias}{again}  ({r['model_uri']})")
    if registered:  # one line: the console of a run stays within a screen
        echo("; ".join(registered))
    echo(f"decision: {reg['decision']}")
    if result.tracking_uri.startswith("sqlite:"):
        page = run_page_url("http://127.0.0.1:5000", result.experiment_id, result.pipeline_run_id)
        echo(f"tracking URI: {result.tracking_uri} · look at it: mlflow ui --backend-store-uri {result.tracking_uri} "
             f"--port 5000, then open {page}")
    elif result.tracking_uri.startswith(("http://", "https://")):
        echo(f"tracking URI: {redact(result.tracking_uri)} · run page: "
             f"{run_page_url(_without_credentials(result.tracking_uri), result.experiment_id, result.pipeline_run_id)}")
    else:
        echo(f"tracking URI: {redact(result.tracking_uri)}")


def _without_credentials(uri: str) -> str:
    """``http://user:pw@host:port/x`` -> ``http://host:port/x``: a link to print, with nothing secret in it."""
    return re.sub(r"://[^/@\s]+@", "://", uri)


def _pm(ev: dict, key: str, fmt: str = ".3f") -> str:
    v, sd = ev.get(key), ev.get(f"{key}_std")
    if not isinstance(v, (int, float)):
        return "n/a"
    return f"{v:{fmt}}" + (f" ± {sd:{fmt}}" if isinstance(sd, (int, float)) else "")


def headline_lines(ev: dict) -> list[str]:
    """The evaluate step's figures as a few readable lines, each beside its baselines."""
    lines = [
        f"VAE on {ev['num_test_clips']} test clips ({ev.get('vae_compression', float('nan')):.0f}x compression): "
        f"PSNR {_pm(ev, 'vae_psnr', '.2f')} dB, SSIM {_pm(ev, 'vae_ssim')}, colour ratio {ev.get('vae_colour_ratio', float('nan')):.2f}"
        f" | mean-frame baseline {ev['baseline_psnr']:.2f} dB, SSIM {ev['baseline_ssim']:.3f}",
    ]
    if "gan_fd" in ev:
        space = ev.get("gan_feature_space", "judge")
        judge = f", judge test accuracy {ev['judge_test_accuracy']:.2f}" if "judge_test_accuracy" in ev else ""
        lines.append(
            f"GAN ({ev.get('eval_num_samples')} samples x {ev.get('eval_seeds')} seeds, {space} features{judge}), mean ± std:"
        )
        # One row per clip set, one column per figure: the GAN beside its two baselines in 4 lines.
        columns = [(key, label) for key, label in (
            ("fd", "Fréchet dist."), ("precision", "precision"), ("recall", "recall"),
            ("class_consistency", "class consist."), ("diversity_ratio", "diversity"), ("colour_ratio", "colour"),
        ) if f"gan_{key}" in ev]
        cells = {s: [_pm(ev, f"{s}_{key}", ".1f" if key == "fd" else ".2f") for key, _ in columns]
                 for s in ("gan", "real", "prior")}
        widths = [max(len(label), *(len(cells[s][i]) for s in cells)) for i, (_, label) in enumerate(columns)]
        lines.append("  " + " " * 14 + "  ".join(label.ljust(w) for (_, label), w in zip(columns, widths)).rstrip())
        for set_name, title in (("gan", "GAN"), ("real", "real-vs-real"), ("prior", "VAE prior")):
            lines.append(f"  {title:<14}" + "  ".join(c.ljust(w) for c, w in zip(cells[set_name], widths)).rstrip())
        for key in ("judge_warning", "judge_class_warning"):
            if ev.get(key):
                lines.append(f"  warning: {ev[key]}")
    return lines
