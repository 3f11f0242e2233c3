"""Generated moving-shapes videos: the embedded default's labelled data set.

Each video shows one or two copies of its class's shape (circle, square,
triangle or cross) in a random bright colour on a dark background, moving at a
constant speed and bouncing off the walls. Everything is drawn with numpy and
encoded as real H.264 MP4 (libx264, yuv420p), so ingest exercises the same
decode path as real footage.

Layout::

    out_dir/<class>/<class>_<i:03d>.mp4
    out_dir/synth_index.json      written last; makes generate_dataset idempotent
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidgen_core.config import SynthConfig, fingerprint
from vidgen_core.errors import UserError
from vidgen_core.video.encode import Mp4Writer

INDEX_NAME = "synth_index.json"
# Bump when the rendering changes, so old indexes stop matching.
SYNTH_VERSION = 1
# Fixed order: a class's videos depend on its name only, not on which other classes are chosen.
ALL_SHAPES = ("circle", "square", "triangle", "cross")


@dataclass(frozen=True)
class SynthVideo:
    """One generated video. ``path`` is absolute (the index stores it relative to out_dir)."""

    path: str
    label_name: str
    num_frames: int
    fps: float
    width: int
    height: int


def shape_mask(shape: str, cx: float, cy: float, r: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)`` mask of ``shape`` centred at ``(cx, cy)`` with half-extent ``r`` pixels.

    ``xx``/``yy`` are pixel-centre coordinates, shapes ``(1, W)`` and ``(H, 1)``.
    """
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        half = r * 0.8  # same area-ish as the circle, so size alone does not give the class away
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "cross":
        arm = r / 3
        return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= r) & (np.abs(dx) <= arm))
    if shape == "triangle":
        # Upward equilateral triangle inscribed in the circle of radius r: inside
        # when on the inner side of all three edges (half-plane tests).
        s3 = np.sqrt(3.0)
        return (dy <= r / 2) & (s3 * dx - dy <= r) & (-s3 * dx - dy <= r)
    raise ValueError(f"unknown shape '{shape}', expected one of {ALL_SHAPES}")


def _render(path: Path, shape: str, cfg: SynthConfig, rng: np.random.Generator) -> tuple[int, float]:
    """Draw and encode one video; returns ``(num_frames, fps)``. Frames stream to the encoder."""
    w, h = cfg.width, cfg.height
    fps = float(rng.choice(cfg.fps_choices))
    duration = rng.uniform(cfg.min_duration_s, cfg.max_duration_s)
    num_frames = max(1, round(duration * fps))
    background = rng.integers(0, 40, size=3).astype(np.uint8)
    n_obj = int(rng.integers(1, 3))
    short = min(w, h)
    # Large enough to keep their shape at the 32-px training size; small ones
    # degrade to blobs whose class cannot be told.
    radius = rng.uniform(0.15, 0.28, size=n_obj) * short
    radius = np.maximum(radius, 2.0)
    colour = rng.integers(110, 256, size=(n_obj, 3)).astype(np.uint8)
    lo, hi = radius[:, None], np.array([w, h], dtype=float)[None, :] - radius[:, None]
    pos = lo + rng.uniform(size=(n_obj, 2)) * np.maximum(hi - lo, 0.0)
    # Speed in pixels per second (a fraction of the frame per second), so the
    # motion looks the same whatever fps was drawn.
    speed = rng.uniform(0.6, 1.4, size=n_obj) * short / fps
    angle = rng.uniform(0, 2 * np.pi, size=n_obj)
    vel = np.stack([np.cos(angle), np.sin(angle)], axis=1) * speed[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :] + 0.5
    yy = np.arange(h, dtype=np.float32)[:, None] + 0.5

    tmp = path.with_name(f".{path.name}.tmp")
    with Mp4Writer(tmp, fps=fps) as writer:
        for _ in range(num_frames):
            frame = np.empty((h, w, 3), dtype=np.uint8)
            frame[:] = background
            for k in range(n_obj):
                frame[shape_mask(shape, pos[k, 0], pos[k, 1], radius[k], xx, yy)] = colour[k]
            writer.write(frame)
            pos += vel
            # Bounce: reflect the position back inside and flip that velocity component.
            for axis, limit in ((0, w), (1, h)):
                low = pos[:, axis] < radius
                high = pos[:, axis] > limit - radius
                pos[low, axis] = 2 * radius[low] - pos[low, axis]
                pos[high, axis] = 2 * (limit - radius[high]) - pos[high, axis]
                vel[low | high, axis] *= -1
                pos[:, axis] = np.clip(pos[:, axis], radius, np.maximum(limit - radius, radius))
    os.replace(tmp, path)
    return num_frames, fps


def _index_fingerprint(cfg: SynthConfig) -> str:
    return fingerprint({"synth": cfg.model_dump(mode="json"), "version": SYNTH_VERSION})


def _load_index(out_dir: Path, fp: str) -> list[SynthVideo] | None:
    """The videos of a complete, matching earlier run, or None."""
    try:
        index = json.loads((out_dir / INDEX_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("fingerprint") != fp:
        return None
    videos = [SynthVideo(**{**v, "path": str(out_dir / v["path"])}) for v in index["videos"]]
    if not all(Path(v.path).is_file() for v in videos):
        return None
    return videos


def generate_dataset(cfg: SynthConfig, out_dir: str | Path) -> list[SynthVideo]:
    """Write ``len(cfg.classes) * cfg.videos_per_class`` labelled MP4s under ``out_dir``.

    Deterministic from ``cfg.seed``: each video draws from its own generator
    seeded by ``(seed, shape, index)``. If ``out_dir/synth_index.json`` exists
    and matches ``cfg``, the existing videos are returned without rewriting.

    Raises:
        UserError: odd width/height (H.264 yuv420p needs even sizes) or duplicate classes.
    """
    if cfg.width % 2 or cfg.height % 2:
        raise UserError(f"synth.width and synth.height must be even for H.264, got {cfg.width}x{cfg.height}")
    if len(set(cfg.classes)) != len(cfg.classes):
        raise UserError(f"synth.classes has duplicates: {cfg.classes}")
    out = Path(out_dir).expanduser().resolve()
    fp = _index_fingerprint(cfg)
    done = _load_index(out, fp)
    if done is not None:
        return done
    # A stale index must not survive a half-finished regeneration.
    (out / INDEX_NAME).unlink(missing_ok=True)

    videos: list[SynthVideo] = []
    for shape in cfg.classes:
        (out / shape).mkdir(parents=True, exist_ok=True)
        for i in range(cfg.videos_per_class):
            rng = np.random.default_rng([cfg.seed, ALL_SHAPES.index(shape), i])
            path = out / shape / f"{shape}_{i:03d}.mp4"
            num_frames, fps = _render(path, shape, cfg, rng)
            videos.append(SynthVideo(str(path), shape, num_frames, fps, cfg.width, cfg.height))

    index = {
        "fingerprint": fp,
        "config": cfg.model_dump(mode="json"),
        "videos": [{**asdict(v), "path": Path(v.path).relative_to(out).as_posix()} for v in videos],
    }
    tmp = out / f".{INDEX_NAME}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / INDEX_NAME)  # last and atomic: the index means "all videos are complete"
    return videos
