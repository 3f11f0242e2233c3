"""What a use reads: video files, folders of them, or a shard set, cut into clips as at training.

The clips a model sees at use time must be cut the way its training clips
were (same frame sampling, resize, clip length): :func:`iter_video_clips`
reuses ingest's own planner and decoder with the model's recorded
:class:`IngestConfig`, so nothing is re-implemented and nothing drifts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidgen_core import storage
from vidgen_core.config import DataConfig, IngestConfig
from vidgen_core.errors import UserError


@dataclass(frozen=True)
class VideoInput:
    """One video to use: its URI, and its class when a folder layout gives one (-1 / "" otherwise)."""

    source: str
    label: int = -1
    label_name: str = ""


@dataclass(frozen=True)
class ClipBatch:
    """Consecutive clips of one video: ``frames`` uint8 ``(B, T, H, W, 3)``, starts in source frames / seconds."""

    video: VideoInput
    frames: np.ndarray
    start_frame: np.ndarray  # int64 (B,)
    start_s: np.ndarray  # float64 (B,)


def is_shard_set(src: str) -> bool:
    """A folder written by ``vidgen ingest`` (its manifest is written last: present means complete)."""
    from vidgen_core.data.schema import MANIFEST_NAME

    return "://" not in src and Path(src, MANIFEST_NAME).is_file()


def list_videos(src: str, data: DataConfig | None = None) -> tuple[list[VideoInput], list[str]]:
    """The videos of ``src`` (a file or a folder; class sub-folders give labels, as for ingest).

    Returns:
        ``(videos, label_names)``; a single file has no label.

    Raises:
        UserError: ``src`` is missing, or a folder without video files.
    """
    from vidgen_core.data.inputs import list_inputs

    if "://" not in src:
        p = Path(src)
        if not p.exists():
            raise UserError(f"'{src}' does not exist; pass a video file, a folder of videos or a shard set")
        if p.is_file():
            return [VideoInput(storage.normalize(src))], []
    rows, names = list_inputs(src, data or DataConfig())
    return [VideoInput(r["source"], int(r["label"]), r["label_name"]) for r in rows], names


def iter_video_clips(video: VideoInput, cfg: IngestConfig, batch_size: int) -> Iterator[ClipBatch]:
    """The clips of one video in order, ``batch_size`` at a time (memory: one batch + the decode window).

    Raises:
        UserError: the file is missing, not a video, too short for one clip, or damaged
            (one line naming it); clips before damage were already yielded.
    """
    from vidgen_core.data.clips import iter_clips
    from vidgen_core.video.decode import VideoError, VideoReader

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    try:
        with VideoReader(video.source) as reader:
            buf: list = []
            for clip in iter_clips(reader, cfg):
                buf.append(clip)
                if len(buf) == batch_size:
                    yield _batch(video, buf)
                    buf = []
            if buf:
                yield _batch(video, buf)
    except VideoError as exc:
        raise UserError(str(exc).splitlines()[0] if str(exc) else f"cannot read '{video.source}'") from None


def _batch(video: VideoInput, clips: list) -> ClipBatch:
    frames = np.stack([np.stack(c.frame_list) for c in clips])
    starts = np.array([c.start_frame for c in clips], dtype=np.int64)
    times = np.array([c.start_s for c in clips], dtype=np.float64)
    return ClipBatch(video, frames, starts, times)


def video_clips(source: str, cfg: IngestConfig) -> ClipBatch:
    """All clips of one video file as one batch (for a use that needs the whole video, e.g. compare)."""
    if "://" not in source and not Path(source).is_file():
        raise UserError(f"'{source}' is not a video file")
    # iter_clips yields at least one clip or raises, so there is exactly one batch.
    return next(iter_video_clips(VideoInput(storage.normalize(source)), cfg, batch_size=1 << 30))
