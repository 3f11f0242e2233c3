"""Clip planning and split assignment: pure functions of counts, ids and config.

Terms: a video has ``num_frames`` *source* frames. Keeping every
``frame_step``-th one gives the *sampled* frames 0, step, 2*step, ... A clip is
``clip_len`` consecutive sampled frames; clips start every ``stride`` sampled
frames. Starts are reported as source-frame indices.
"""

from __future__ import annotations

import hashlib
import json
import math

from vidgen_core.config import IngestConfig

SPLITS = ("train", "val", "test")


def plan_clips(num_frames: int, cfg: IngestConfig) -> list[int]:
    """Source-frame index of each clip start, ascending.

    With ``M = ceil(num_frames / frame_step)`` sampled frames, clips start at
    sampled index ``s = 0, stride, 2*stride, ...`` while ``s + clip_len <= M``.
    If ``max_clips_per_video`` caps the count, the kept clips are spread evenly
    over the video (first one always kept) rather than bunched at its start.

    Example: 20 frames, clip_len 8, stride 8, step 1 -> [0, 8].
    """
    if num_frames <= 0:
        return []
    step = cfg.frame_step
    sampled = math.ceil(num_frames / step)
    starts = list(range(0, sampled - cfg.clip_len + 1, cfg.stride))
    cap = cfg.max_clips_per_video
    if cap is not None and len(starts) > cap:
        # floor(i * n / cap) is strictly increasing for n > cap: distinct, evenly spaced picks.
        starts = [starts[i * len(starts) // cap] for i in range(cap)]
    return [s * step for s in starts]


def clip_frame_indices(start_frame: int, cfg: IngestConfig) -> list[int]:
    """Source-frame indices of the ``clip_len`` frames of the clip starting at ``start_frame``."""
    return [start_frame + k * cfg.frame_step for k in range(cfg.clip_len)]


def min_frames(cfg: IngestConfig) -> int:
    """Fewest source frames that still give one clip."""
    return (cfg.clip_len - 1) * cfg.frame_step + 1


def _unit_interval(text: str) -> float:
    """A number in [0, 1) from the first 64 bits of sha256(text): uniform and platform-independent."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def assign_split(video_id: str, val_fraction: float, test_fraction: float) -> str:
    """"train", "val" or "test" for a video, deterministically from its id.

    ``u = sha256(video_id) in [0, 1)``: test if ``u < test_fraction``, val if
    ``u < test_fraction + val_fraction``, else train. Every clip of a video gets
    the video's split, so no video leaks between splits.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"need fractions >= 0 with val + test < 1, got val={val_fraction} test={test_fraction}")
    u = _unit_interval(video_id)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def video_id_of(relative_path: str) -> str:
    """Stable id of a video: sha256 of its path relative to the source root, 16 hex chars."""
    return hashlib.sha256(relative_path.encode()).hexdigest()[:16]


def make_clip_id(source: str, start_frame: int, cfg: IngestConfig) -> str:
    """Stable id of a clip: hash of its source, start frame and the sampling settings that shape it."""
    key = [source, int(start_frame), cfg.clip_len, cfg.frame_step, cfg.size]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
