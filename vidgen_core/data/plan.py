"""Clip planning and split assignment: pure functions of counts, rates, ids and config.

Terms: a video has ``num_frames`` *source* frames at ``fps``. The *sampling
grid* picks the frames clips are made of: sampled frame ``k`` is source frame
``first + floor(k * ratio)``, where ``ratio`` is ``frame_step`` (keep every
k-th frame) or ``fps / target_fps`` (resample to a rate: sampled frame ``k``
is the source frame on screen at time ``first / fps + k / target_fps``), and
``first`` skips ``trim_start_s``. A clip is ``clip_len`` consecutive sampled
frames; clips start every ``stride`` sampled frames. Starts are reported as
source-frame indices.

Rates are exact fractions (29.97 is 2997/100, 30000/1001 stays that), so
29.97 -> 8 fps picks source frames 0, 3, 7, 11, 14, 18, ... (floor(k * 2997 / 800)).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from fractions import Fraction

from vidgen_core.config import IngestConfig

SPLITS = ("train", "val", "test")


def exact_rate(fps: float) -> Fraction:
    """``fps`` as the fraction it stands for (29.97 -> 2997/100, 30000/1001 stays)."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _seconds(s: float) -> Fraction:
    # 0.1 s must be exactly 1/10, not the binary float just above it.
    return Fraction(s).limit_denominator(1_000_000)


@dataclass(frozen=True)
class SampleGrid:
    """The sampled frames of one video: ``source_index(k)`` for ``0 <= k < count``."""

    first: int  # source index of sampled frame 0
    ratio: Fraction  # source frames per sampled frame
    count: int  # number of sampled frames
    fps: float  # rate of the sampled frames (the clips' fps)
    start_s: float  # time of sampled frame 0

    def source_index(self, k: int) -> int:
        # floor(k * ratio) in integers: the same value, 0.3 us a call against 7 us through a
        # Fraction, and ingest asks for it about once per frame (bench/RESULTS.md, "Ingest").
        return self.first + k * self.ratio.numerator // self.ratio.denominator

    def time_s(self, k: int) -> float:
        """Time of sampled frame ``k`` in the source (seconds)."""
        return self.start_s + k / self.fps


def sample_grid(num_frames: int, cfg: IngestConfig, fps: float | None = None) -> SampleGrid:
    """The sampling grid of a ``num_frames``-frame video at ``fps``.

    ``fps`` is required with ``target_fps`` or trimming; without them it only
    sets the reported times. Source frames ``i`` with ``trim_start_s <= i / fps
    < duration - trim_end_s`` are usable.
    """
    needs_rate = cfg.target_fps is not None or cfg.trim_start_s or cfg.trim_end_s
    if fps is None and needs_rate:
        raise ValueError("sample_grid needs the source fps with target_fps or trimming")
    rate = exact_rate(fps) if fps is not None else Fraction(1)
    first = math.ceil(_seconds(cfg.trim_start_s) * rate)
    end = num_frames - math.floor(_seconds(cfg.trim_end_s) * rate)
    if cfg.target_fps is not None:
        target = exact_rate(cfg.target_fps)
        ratio, out_fps = rate / target, float(target)
    else:
        ratio = Fraction(cfg.frame_step)
        out_fps = float(rate / cfg.frame_step) if fps is not None else 1.0 / cfg.frame_step
    # k is sampled while first + floor(k * ratio) < end, i.e. k < (end - first) / ratio.
    count = math.ceil((end - first) / ratio) if end > first else 0
    start_s = float(first / rate) if fps is not None else 0.0
    return SampleGrid(first=first, ratio=ratio, count=count, fps=out_fps, start_s=start_s)


def plan_starts(count: int, cfg: IngestConfig) -> list[int]:
    """Sampled index of each clip start in ``count`` sampled frames, ascending.

    Clips start at ``s = 0, stride, 2*stride, ...`` while ``s + clip_len <= count``.
    If ``max_clips_per_video`` caps the count, the kept clips are spread evenly
    over the video (first one always kept) rather than bunched at its start.
    """
    starts = list(range(0, count - cfg.clip_len + 1, cfg.stride))
    cap = cfg.max_clips_per_video
    if cap is not None and len(starts) > cap:
        # floor(i * n / cap) is strictly increasing for n > cap: distinct, evenly spaced picks.
        starts = [starts[i * len(starts) // cap] for i in range(cap)]
    return starts


def plan_clips(num_frames: int, cfg: IngestConfig, fps: float | None = None) -> list[int]:
    """Source-frame index of each clip start, ascending (see :func:`plan_starts`).

    ``fps`` is needed with ``target_fps`` or trimming (see :func:`sample_grid`).

    Example: 20 frames, clip_len 8, stride 8, step 1 -> [0, 8].
    """
    if num_frames <= 0:
        return []
    grid = sample_grid(num_frames, cfg, fps)
    return [grid.source_index(s) for s in plan_starts(grid.count, cfg)]


class ScenePlanner:
    """Clip starts when hard cuts are found while decoding: no clip spans a cut.

    Each scene gets its own grid (clips start at the scene's first sampled
    frame, then every ``stride``). ``max_clips_per_video`` keeps the first
    candidate at or after each of the evenly spread targets of the cut-free
    plan, so without cuts this equals :func:`plan_starts`.

    Usage, for sampled frames ``j = 0, 1, ...`` in order: ``cut(j)`` when frame
    ``j`` starts a new scene, then ``ends_at(j)`` gives the start of the clip
    that ends at ``j`` (or None).
    """

    def __init__(self, count: int, cfg: IngestConfig) -> None:
        self._len, self._stride = cfg.clip_len, cfg.stride
        self._scene = 0
        nominal = list(range(0, count - cfg.clip_len + 1, cfg.stride))
        cap = cfg.max_clips_per_video
        self._targets = plan_starts(count, cfg) if cap is not None and len(nominal) > cap else None
        self._next = 0  # index of the next unmet target

    def cut(self, j: int) -> None:
        self._scene = j

    @property
    def done(self) -> bool:
        """True once a cap's targets are all met: later frames give no clips."""
        return self._targets is not None and self._next >= len(self._targets)

    def ends_at(self, j: int) -> int | None:
        s = j - self._len + 1
        if s < self._scene or (s - self._scene) % self._stride:
            return None
        if self._targets is None:
            return s
        if self._next >= len(self._targets) or s < self._targets[self._next]:
            return None
        while self._next < len(self._targets) and self._targets[self._next] <= s:
            self._next += 1
        return s


def clip_frame_indices(start_frame: int, cfg: IngestConfig) -> list[int]:
    """Source-frame indices of the clip starting at ``start_frame`` (frame_step sampling)."""
    return [start_frame + k * cfg.frame_step for k in range(cfg.clip_len)]


def min_frames(cfg: IngestConfig) -> int:
    """Fewest source frames that still give one clip (frame_step sampling, no trimming)."""
    return (cfg.clip_len - 1) * cfg.frame_step + 1


def _unit_interval(text: str) -> float:
    """A number in [0, 1) from the first 64 bits of sha256(text): uniform and platform-independent."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def assign_split(video_id: str, val_fraction: float, test_fraction: float) -> str:
    """"train", "val" or "test" for a video, deterministically from its id.

    ``u = sha256(video_id) in [0, 1)``: test if ``u < test_fraction``, val if
    ``u < test_fraction + val_fraction``, else train. Every clip of a video gets
    the video's split, so no video leaks between splits, and a video keeps its
    split when other videos are added.
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


def make_clip_id(source: str, start_frame: int, cfg: IngestConfig, sample: int | None = None) -> str:
    """Stable id of a clip: hash of its source, start and the sampling settings that shape it.

    ``sample`` (the clip's first sampled index) identifies clips when resampling
    up (two clips may then start on the same source frame).
    """
    key: list = [source, int(start_frame), cfg.clip_len, cfg.frame_step, cfg.size]
    extra = {
        "target_fps": cfg.target_fps,
        "trim_start_s": cfg.trim_start_s or None,
        "resize": None if cfg.resize == "short_side_crop" else cfg.resize,
        "sample": sample if cfg.target_fps is not None else None,
    }
    extra = {k: v for k, v in extra.items() if v is not None}
    if extra:  # only non-default settings enter the key, so default ids stay as they were
        key.append(extra)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
