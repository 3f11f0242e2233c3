"""The codec_eval step's work: fit the probability model, draw RD curves against libx264, BD-rate.

    fit_and_evaluate(model_dir, shard_dir, cfg, out_dir) -> CodecEval
      out_dir/codec/codec.json      the probability model (registered with the VAE)
      out_dir/codec_rd.png          PSNR and SSIM against bpp, every curve
      out_dir/codec_rd.csv / .json  every rate point; the JSON adds BD figures and per-rate gaps
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen_core.config import CodecConfig

KNEE_DB = 0.2  # default quality: the coarsest within this much PSNR of the best


@dataclass
class CodecEval:
    codec_dir: str
    plot: str
    csv: str
    json: str
    metrics: dict[str, float] = field(default_factory=dict)
    summary: str = ""


def _slug(label: str) -> str:
    return label.replace("x264 ", "").replace(" ", "_")


def fit_and_evaluate(model_dir: str, shard_dir: str, cfg: CodecConfig, out_dir: str) -> CodecEval:
    """See the module docstring. Figures are on the test split at the training size."""
    from vidgen_core.codec.model import codec_model
    from vidgen_core.codec.prior import fit_prior, save_prior
    from vidgen_core.codec.rd import (
        at_equal_rate, bd_figures, load_test_videos, plot_rd, train_latents, unquantised_quality, vidgen_points,
        write_tables, x264_points,
    )
    from vidgen_core.errors import UserError
    from vidgen_core.models.io import load_model

    vae, config = load_model(model_dir)
    latents = train_latents(vae, shard_dir, cfg.max_train_clips)
    prior = fit_prior(latents, tuple(cfg.steps), cfg.default_quality or 0,
                      fitted_on={"split": "train", "clips": int(len(latents)), "latent_shape": list(latents.shape[1:])})
    codec_dir = os.path.join(out_dir, "codec")
    save_prior(prior, codec_dir)
    window = int((config.get("extra") or {}).get("clip_len", 8))
    model = codec_model(vae, prior, name="codec-eval", version=0, window=window)

    videos = load_test_videos(shard_dir, "test", cfg.max_test_videos, cfg.max_frames_per_video)
    if not videos:
        raise UserError(f"no test clips in '{shard_dir}': the codec's RD curves need a test split")
    ours = vidgen_points(model, videos, list(range(prior.num_qualities)))
    if cfg.default_quality is None:  # the knee: finer qualities than this only cost bits
        best = max(p.psnr for p in ours)
        knee = min(i for i, p in enumerate(ours) if p.psnr >= best - KNEE_DB)
        prior = dataclasses.replace(prior, default_quality=knee)
        save_prior(prior, codec_dir)
    ceiling_psnr, ceiling_ssim = unquantised_quality(model, videos)
    curves = {"vidgen": ours}
    for preset in cfg.presets:
        for pix_fmt in cfg.pix_fmts:
            label = f"x264 {preset} {pix_fmt}"
            curves[label] = x264_points(videos, cfg.crfs, preset, pix_fmt)
    anchor_label = f"x264 {cfg.presets[0]} {cfg.pix_fmts[0]}"

    bd: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for label, points in curves.items():
        if label == "vidgen":
            continue
        bd[label] = {"psnr": bd_figures(points, ours, "psnr"), "ssim": bd_figures(points, ours, "ssim")}
        slug = _slug(label)
        metrics[f"codec_bd_rate_{slug}"] = bd[label]["psnr"]["bd_rate"]
        metrics[f"codec_bd_psnr_{slug}"] = bd[label]["psnr"]["bd_metric"]
        metrics[f"codec_bd_rate_ssim_{slug}"] = bd[label]["ssim"]["bd_rate"]
        mid = sorted(points, key=lambda p: p.bpp)[len(points) // 2]  # speed at the median rate
        metrics[f"codec_encode_fps_{slug}"] = mid.encode_fps
        metrics[f"codec_decode_fps_{slug}"] = mid.decode_fps
    main = bd[anchor_label]["psnr"]
    metrics["codec_bd_rate"] = main["bd_rate"]
    metrics["codec_bd_psnr"] = main["bd_metric"]
    bpps = [p.bpp for p in ours]
    metrics.update({
        "codec_bpp_min": min(bpps), "codec_bpp_max": max(bpps), "codec_bpp_span": max(bpps) / min(bpps),
        "codec_psnr_min": min(p.psnr for p in ours), "codec_psnr_max": max(p.psnr for p in ours),
        "codec_encode_fps": sum(p.encode_fps for p in ours) / len(ours),
        "codec_decode_fps": sum(p.decode_fps for p in ours) / len(ours),
        "codec_test_videos": len(videos), "codec_test_frames": sum(len(v.frames) for v in videos),
        "codec_num_qualities": prior.num_qualities, "codec_default_quality": prior.default_quality,
        # The VAE alone (no quantisation): no rate can do better. A gap between this and x264 is the VAE's.
        "codec_unquantised_psnr": ceiling_psnr, "codec_unquantised_ssim": ceiling_ssim,
    })
    gaps = at_equal_rate(curves[anchor_label], ours)
    summary = _summary(metrics, main, gaps, anchor_label)
    out = Path(out_dir)
    plot = plot_rd(curves, out / "codec_rd.png",
                   f"vidgen vs libx264 (-tune psnr) on {len(videos)} test videos, "
                   f"{videos[0].frames.shape[2]}x{videos[0].frames.shape[1]}; BD-rate vs {anchor_label}: "
                   f"{_pct(main['bd_rate'])}")
    extra = {"bd": bd, "anchor": anchor_label, "at_equal_rate_vs_anchor": gaps, "summary": summary,
             "bytes_counted": "vidgen: whole .vgc file (header included); x264: raw H.264 stream with SPS/PPS, "
                              "without x264's version SEI; no container on either side",
             "test_videos": [{"video_id": v.video_id, "frames": int(len(v.frames)), "fps": v.fps} for v in videos]}
    all_points = [p for pts in curves.values() for p in pts]
    write_tables(all_points, out / "codec_rd.csv", out / "codec_rd.json", extra)
    return CodecEval(codec_dir, str(plot), str(out / "codec_rd.csv"), str(out / "codec_rd.json"),
                     {k: float(v) for k, v in metrics.items()}, summary)


def _pct(v: float) -> str:
    return "n/a (no overlap)" if math.isnan(v) else f"{v:+.1f} %"


def _summary(metrics: dict[str, float], main: dict[str, Any], gaps: list[dict[str, float]], anchor: str) -> str:
    """One paragraph: BD-rate, where vidgen wins or loses against the anchor at equal rate."""
    text = (f"BD-rate vs {anchor}: {_pct(main['bd_rate'])} (BD-PSNR {main['bd_metric']:+.2f} dB over "
            f"{main['overlap'][0]:.1f}-{main['overlap'][1]:.1f} dB); vidgen spans {metrics['codec_bpp_min']:.4f}-"
            f"{metrics['codec_bpp_max']:.4f} bpp, PSNR {metrics['codec_psnr_min']:.2f}-{metrics['codec_psnr_max']:.2f} dB "
            f"(the VAE without quantisation: {metrics['codec_unquantised_psnr']:.2f} dB, the ceiling at any rate).")
    lose = [g for g in gaps if not math.isnan(g["delta_db"]) and g["delta_db"] < 0]
    win = [g for g in gaps if not math.isnan(g["delta_db"]) and g["delta_db"] >= 0]

    def rates(rows: list[dict[str, float]]) -> str:
        gaps_db = [abs(g["delta_db"]) for g in rows]
        low, high = "%.1f" % min(gaps_db), "%.1f" % max(gaps_db)
        return ", ".join("%.3f" % g["bpp"] for g in rows) + f" bpp (by {low if low == high else f'{low}-{high}'} dB)"

    if lose:
        text += " At equal rate vidgen loses at " + rates(lose)
    if win:
        text += ("; it wins at " if lose else " At equal rate vidgen wins at ") + rates(win)
    low = [g for g in gaps if g["anchor_range"] == "below"]
    high = [g for g in gaps if g["anchor_range"] == "above"]
    if low:
        text += (f"; {len(low)} vidgen point(s) ({', '.join('%.3f' % g['bpp'] for g in low)} bpp) lie below the lowest rate "
                 f"x264 reaches (its highest CRF), where it has no point to compare")
    if high:
        text += f"; {len(high)} lie above x264's highest rate"
    return text + "."
