"""Rate-distortion evaluation: vidgen's codec against libx264 on the test split, BD-rate, plot, tables.

Test material: each test video rebuilt from its clips (in start order, at the
training size), so both codecs code whole sequences, as users would, and not
8-frame snippets whose cost is all intra frame. Every figure is computed the
same way on both sides:

* bits per pixel = 8 × bytes / (frames × H × W), summed over the test videos
  (vidgen: the whole ``.vgc`` file; x264: the raw stream, see
  :mod:`vidgen_core.codec.x264`);
* PSNR / SSIM: :mod:`vidgen_core.eval.metrics` on each whole video (RGB),
  averaged over videos.

BD-rate (the ``bjontegaard`` package, pchip) is over the PSNR range where the
two curves overlap: negative means vidgen needs fewer bits for the same PSNR.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidgen_core.codec.model import CodecModel


@dataclass(frozen=True)
class TestVideo:
    video_id: str
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float


@dataclass(frozen=True)
class RDPoint:
    """One rate point of one codec over all test videos."""

    codec: str  # "vidgen", "x264 veryslow yuv420p", ...
    setting: str  # "q5", "crf30"
    bpp: float
    psnr: float
    ssim: float
    num_bytes: int
    raw_bytes: int
    encode_fps: float
    decode_fps: float


def load_test_videos(shard_dir: str, split: str = "test", max_videos: int = 16, max_frames: int = 96) -> list[TestVideo]:
    """The ``split``'s videos rebuilt from their clips (start order), at most ``max_frames`` frames each."""
    import pyarrow.parquet as pq

    from vidgen_core import storage
    from vidgen_core.data import schema
    from vidgen_core.data.readers import frames_to_numpy

    manifest = schema.read_manifest(shard_dir)
    clip_shape = tuple(manifest["clip_shape"])
    clips: dict[str, list[tuple[int, float, np.ndarray]]] = {}
    cols = [schema.COL_FRAMES, schema.COL_VIDEO_ID, schema.COL_START_FRAME, schema.COL_FPS]
    for uri in schema.shard_uris(shard_dir, manifest):
        fs, path = storage.resolve(uri)
        table = pq.read_table(path, filesystem=fs, columns=cols, filters=[(schema.COL_SPLIT, "=", split)])
        if table.num_rows == 0:
            continue
        frames = frames_to_numpy(table.column(schema.COL_FRAMES), clip_shape)
        for i, (vid, start, fps) in enumerate(zip(*(table.column(c).to_pylist() for c in cols[1:]))):
            clips.setdefault(str(vid), []).append((int(start), float(fps), frames[i]))
    videos = []
    for vid in sorted(clips)[:max_videos]:
        parts = sorted(clips[vid], key=lambda c: c[0])
        frames = np.concatenate([p[2] for p in parts])[:max_frames]
        videos.append(TestVideo(vid, np.ascontiguousarray(frames), parts[0][1]))
    return videos


def train_latents(vae: Any, shard_dir: str, max_clips: int, batch_size: int = 16) -> np.ndarray:
    """Posterior means ``(N, C, T', H', W')`` of up to ``max_clips`` train clips."""
    import torch

    from vidgen_core.data.readers import load_clips
    from vidgen_core.eval.inference import module_device
    from vidgen_core.models.vae import frames_to_video

    frames, _ = load_clips(shard_dir, "train", max_clips)
    if len(frames) == 0:
        raise ValueError(f"no train clips in '{shard_dir}' to fit the codec's probability model on")
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            x = frames_to_video(frames[i : i + batch_size], module_device(vae))
            out.append(vae.encode(x).mean.float().cpu().numpy())
    return np.concatenate(out)


def _quality(videos: list[TestVideo], decoded: list[np.ndarray]) -> tuple[float, float]:
    """Mean over videos of each video's PSNR and SSIM (the same functions for every codec)."""
    from vidgen_core.codec.quality import psnr_video, ssim_video

    p = [psnr_video(d, v.frames) for v, d in zip(videos, decoded)]
    s = [ssim_video(d, v.frames) for v, d in zip(videos, decoded)]
    return float(np.mean(p)), float(np.mean(s))


def vidgen_points(model: CodecModel, videos: list[TestVideo], qualities: list[int]) -> list[RDPoint]:
    """Compress and decompress every test video at each quality, through the real bitstream.

    The VAE encoder's output does not depend on the quality: it runs once per
    window (at the first quality, whose encode speed is the full path's) and is
    replayed for the others. Entropy coding, the file and the decode run every time.
    """
    from vidgen_core.codec.stream import compress_frames, decompress_frames, open_vgc

    pixels = sum(v.frames.shape[0] * v.frames.shape[1] * v.frames.shape[2] for v in videos)
    n_frames = sum(len(v.frames) for v in videos)
    cache: dict[str, list[np.ndarray]] = {}
    points = []
    for q in qualities:
        total, enc_s, dec_s, decoded = 0, 0.0, 0.0, []
        for v in videos:
            buf = io.BytesIO()
            encode = _Replay(cache[v.video_id]) if v.video_id in cache else _Record(model, cache.setdefault(v.video_id, []))
            t0 = time.perf_counter()
            total += compress_frames(model, iter(v.frames), buf, fps=v.fps, quality=q, encode=encode).num_bytes
            t1 = time.perf_counter()
            buf.seek(0)
            decoded.append(np.concatenate(list(decompress_frames(model, open_vgc(buf), buf))))
            enc_s, dec_s = enc_s + t1 - t0, dec_s + time.perf_counter() - t1
        psnr, ssim = _quality(videos, decoded)
        if not points:
            encode_fps = n_frames / enc_s
        points.append(RDPoint("vidgen", f"q{q}", 8.0 * total / pixels, psnr, ssim, total, total,
                              encode_fps, n_frames / dec_s))
    return points


def unquantised_quality(model: CodecModel, videos: list[TestVideo]) -> tuple[float, float]:
    """PSNR and SSIM of the VAE alone (posterior mean decoded, no quantisation): vidgen's ceiling at any rate."""
    import torch

    from vidgen_core.eval.inference import module_device
    from vidgen_core.models.vae import video_to_frames

    decoded = []
    for v in videos:
        parts = []
        h, w = v.frames.shape[1:3]
        for i in range(0, len(v.frames), model.window):
            win = v.frames[i : i + model.window]
            z = torch.from_numpy(model.encode_window(win))[None].to(module_device(model.vae))
            with torch.no_grad():
                parts.append(video_to_frames(model.vae.decode(z))[0, : len(win), :h, :w])
        decoded.append(np.concatenate(parts))
    return _quality(videos, decoded)


class _Record:
    """``encode`` for compress_frames: the model's encoder, keeping each window's latents."""

    def __init__(self, model: CodecModel, store: list[np.ndarray]) -> None:
        self.model, self.store = model, store

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        self.store.append(self.model.encode_window(frames))
        return self.store[-1]


class _Replay:
    """``encode`` for compress_frames: the latents a :class:`_Record` kept, in order."""

    def __init__(self, store: list[np.ndarray]) -> None:
        self.it = iter(store)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return next(self.it)


def x264_points(videos: list[TestVideo], crfs: list[int], preset: str, pix_fmt: str) -> list[RDPoint]:
    """libx264 at each CRF (``-tune psnr``) on the same videos."""
    from vidgen_core.codec.x264 import encode_x264

    pixels = sum(v.frames.shape[0] * v.frames.shape[1] * v.frames.shape[2] for v in videos)
    n_frames = sum(len(v.frames) for v in videos)
    points = []
    for crf in crfs:
        results = [encode_x264(v.frames, v.fps, crf, preset, pix_fmt) for v in videos]
        psnr, ssim = _quality(videos, [r.frames for r in results])
        total, raw = sum(r.num_bytes for r in results), sum(r.raw_bytes for r in results)
        enc_s, dec_s = sum(r.encode_s for r in results), sum(r.decode_s for r in results)
        points.append(RDPoint(f"x264 {preset} {pix_fmt}", f"crf{crf}", 8.0 * total / pixels, psnr, ssim, total, raw,
                              n_frames / enc_s, n_frames / dec_s))
    return points


def _monotone(points: list[RDPoint], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, metric) sorted by rate, keeping only points that improve the metric (saturated ones add nothing)."""
    rate, dist = [], []
    for p in sorted(points, key=lambda p: p.bpp):
        value = getattr(p, metric)
        if not dist or (value > dist[-1] and p.bpp > rate[-1]):
            rate.append(p.bpp)
            dist.append(value)
    return np.asarray(rate), np.asarray(dist)


def bd_figures(anchor: list[RDPoint], test: list[RDPoint], metric: str = "psnr") -> dict[str, Any]:
    """BD-rate (%) and BD-metric of ``test`` against ``anchor`` over their overlapping ``metric`` range.

    ``bd_rate`` is NaN (with ``note``) when the curves do not overlap, or have
    fewer than 2 useful points each.
    """
    import bjontegaard as bd

    ra, da = _monotone(anchor, metric)
    rt, dt = _monotone(test, metric)
    lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
    out: dict[str, Any] = {"metric": metric, "overlap": [float(lo), float(hi)], "bd_rate": math.nan, "bd_metric": math.nan}
    if len(ra) < 2 or len(rt) < 2:
        out["note"] = "fewer than 2 rate points that improve the metric"
        return out
    if hi <= lo:
        out["note"] = f"no overlap in {metric}: vidgen {dt.min():.3f}..{dt.max():.3f}, x264 {da.min():.3f}..{da.max():.3f}"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package warns on small overlaps; the overlap is reported instead
        out["bd_rate"] = float(bd.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False))
        out["bd_metric"] = float(bd.bd_psnr(ra, da, rt, dt, method="pchip", require_matching_points=False))
    out["overlap_fraction_of_vidgen"] = float((hi - lo) / max(dt.max() - dt.min(), 1e-9))
    return out


def at_equal_rate(anchor: list[RDPoint], test: list[RDPoint]) -> list[dict[str, float]]:
    """For each vidgen point: the anchor's PSNR at the same bpp (log-rate interpolation; NaN outside its range)."""
    ra, da = _monotone(anchor, "psnr")
    rows = []
    for p in sorted(test, key=lambda p: p.bpp):
        inside = ra[0] <= p.bpp <= ra[-1]
        ref = float(np.interp(np.log(p.bpp), np.log(ra), da)) if inside else math.nan
        where = "inside" if inside else ("below" if p.bpp < ra[0] else "above")
        rows.append({"setting": p.setting, "bpp": p.bpp, "vidgen_psnr": p.psnr, "anchor_psnr": ref,
                     "delta_db": p.psnr - ref, "anchor_range": where})
    return rows


def plot_rd(curves: dict[str, list[RDPoint]], path: str | Path, title: str) -> Path:
    """PSNR and SSIM against bpp (log axis) for every curve; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (label, points), marker in zip(curves.items(), "os^vD<>p"):
        pts = sorted(points, key=lambda p: p.bpp)
        style = "-" if label == "vidgen" else "--"
        for ax, metric in zip(axes, ("psnr", "ssim")):
            ax.plot([p.bpp for p in pts], [getattr(p, metric) for p in pts], style, marker=marker, ms=4, label=label)
    for ax, name in zip(axes, ("PSNR (dB, RGB)", "SSIM")):
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (log)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_tables(points: list[RDPoint], csv_path: str | Path, json_path: str | Path, extra: dict[str, Any]) -> None:
    """Every RD point as CSV, and as JSON together with ``extra`` (BD figures, settings)."""
    rows = [asdict(p) for p in points]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    Path(json_path).write_text(json.dumps({"points": rows, **extra}, indent=1, default=_nan_safe))


def _nan_safe(value: Any) -> Any:
    return str(value)
