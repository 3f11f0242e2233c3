"""One video -> its clips: plan, decode the wanted frames once, cut clips from a rolling window.

Memory per video is a window of at most ``clip_len`` decoded (already
resized) frames plus the clip being handed out, whatever the video's length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vidgen_core.config import IngestConfig
from vidgen_core.data.plan import SampleGrid, ScenePlanner, plan_starts, sample_grid
from vidgen_core.video.decode import VideoError, VideoReader
from vidgen_core.video.scenes import CutDetector


@dataclass(frozen=True)
class Clip:
    """A clip starting at sampled frame ``sample``: ``frame_list`` holds its T uint8 ``(size, size, 3)``
    frames (possibly views of larger arrays), so a consumer copies each pixel once, where it wants it."""

    sample: int
    start_frame: int  # source-frame index of its first frame
    start_s: float
    frame_list: tuple[np.ndarray, ...]

    @property
    def frames(self) -> np.ndarray:
        """The clip as one uint8 ``(T, size, size, 3)`` array (a copy)."""
        return np.stack(self.frame_list)


def too_short_message(path: str, grid: SampleGrid, cfg: IngestConfig, num_frames: int) -> str:
    return (
        f"'{path}' gives {grid.count} sampled frames ({num_frames} source frames), fewer than the "
        f"clip_len={cfg.clip_len} one clip needs"
    )


def iter_clips(reader: VideoReader, cfg: IngestConfig) -> Iterator[Clip]:
    """The clips of an open video, in order.

    Without ``scene_cuts`` only the frames of planned clips are decoded past
    and converted. With it every sampled frame is converted (the detector
    needs them) and clips are planned per scene (:class:`ScenePlanner`).

    Raises:
        VideoError: stage "plan" when the video is too short for one clip.
        VideoDecodeError: damage; the clips before it were already yielded.
    """
    info = reader.info
    grid = sample_grid(info.num_frames, cfg, info.fps)
    starts = plan_starts(grid.count, cfg)
    if not starts:
        raise VideoError(too_short_message(reader.path, grid, cfg, info.num_frames), stage="plan", source=reader.path)
    if cfg.scene_cuts:
        yield from _scene_clips(reader, grid, cfg)
    else:
        yield from _planned_clips(reader, grid, starts, cfg)


def _planned_clips(reader: VideoReader, grid: SampleGrid, starts: list[int], cfg: IngestConfig) -> Iterator[Clip]:
    t = cfg.clip_len

    def wanted() -> Iterator[tuple[int, int]]:
        done = -1  # overlapping clips share frames: ask for each sampled frame once
        for s in starts:
            for k in range(max(s, done + 1), s + t):
                yield k, grid.source_index(k)
            done = s + t - 1

    window: dict[int, np.ndarray] = {}
    i = 0  # next clip to hand out
    for k, rgb in reader.frames(wanted(), cfg.size, cfg.resize):
        window[k] = rgb
        while i < len(starts) and starts[i] + t - 1 == k:
            s = starts[i]
            yield Clip(s, grid.source_index(s), grid.time_s(s), tuple(window[j] for j in range(s, s + t)))
            i += 1
            keep_from = starts[i] if i < len(starts) else k + 1
            for j in [j for j in window if j < keep_from]:
                del window[j]


def _scene_clips(reader: VideoReader, grid: SampleGrid, cfg: IngestConfig) -> Iterator[Clip]:
    planner = ScenePlanner(grid.count, cfg)
    detector = CutDetector(cfg.scene_cut_threshold)
    window: deque[np.ndarray] = deque(maxlen=cfg.clip_len)
    every = ((k, grid.source_index(k)) for k in range(grid.count))
    for k, rgb in reader.frames(every, cfg.size, cfg.resize):
        if detector.is_cut(rgb):
            planner.cut(k)
        window.append(rgb)
        s = planner.ends_at(k)
        if s is not None:
            yield Clip(s, grid.source_index(s), grid.time_s(s), tuple(window))
        if planner.done:
            return
