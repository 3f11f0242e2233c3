"""Probe and decode videos with PyAV, reading through pyarrow.fs (local, s3://, gs://).

Frames come out as ``(size, size, 3)`` uint8 RGB: the short side is scaled to
``size`` and the centre cropped. Colour conversion and scaling happen in one
swscale call per frame (``interpolation="AREA"``, the right filter for large
downscales); that call, not the decode, bounds ingest speed, so it runs only on
frames that are kept.

Failures raise :class:`VideoError` whose ``stage`` says where it happened:
``"open"`` (missing file, not a media container), ``"probe"`` (no video stream,
no frames, unknown rate) or ``"decode"`` (damaged or truncated stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import numpy as np

from vidgen_core import storage

# Containers whose per-stream frame count comes from the sample table (exact);
# elsewhere (mkv, webm, avi, ...) the header count is missing or a guess.
_EXACT_COUNT_FORMATS = ("mov", "mp4")


class VideoError(Exception):
    """A video that cannot be used, with the pipeline ``stage`` that found out."""

    def __init__(self, message: str, stage: str, source: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.source = source

    @property
    def error_type(self) -> str:
        """Name of the underlying cause (the chained exception's class if any)."""
        cause = self.__cause__
        return type(cause).__name__ if cause is not None else type(self).__name__


class VideoDecodeError(VideoError):
    """The stream is damaged or ends early; frames before the damage were delivered."""

    def __init__(self, message: str, source: str = "") -> None:
        super().__init__(message, stage="decode", source=source)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video's first video stream."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    codec: str


@contextmanager
def _open(path: str) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open ``path`` through pyarrow.fs and yield ``(container, first video stream)``."""
    try:
        fs, fs_path = storage.resolve(path)
        f = fs.open_input_file(fs_path)
    except (OSError, ValueError) as exc:  # FileNotFoundError, permission, bad URI
        raise VideoError(f"cannot open '{path}': {exc}", stage="open", source=path) from exc
    try:
        try:
            container = av.open(f, mode="r")
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"'{path}' is not a readable media file: {exc}", stage="open", source=path) from exc
        try:
            if not container.streams.video:
                raise VideoError(f"'{path}' has no video stream", stage="probe", source=path)
            yield container, container.streams.video[0]
        finally:
            container.close()
    finally:
        f.close()


def _frame_rate(stream: av.VideoStream, path: str) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise VideoError(f"'{path}' has no usable frame rate", stage="probe", source=path)
    return float(rate)


def probe(path: str) -> VideoInfo:
    """Describe the first video stream of ``path``; ``num_frames`` is exact.

    MP4/MOV give an exact count from their sample table; for other containers
    the video packets are counted by demuxing (no decoding, so it is cheap).
    """
    with _open(path) as (container, stream):
        fps = _frame_rate(stream, path)
        n = stream.frames if any(f in container.format.name for f in _EXACT_COUNT_FORMATS) else 0
        if n <= 0:
            try:
                n = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
            except av.error.FFmpegError as exc:
                raise VideoError(f"cannot demux '{path}': {exc}", stage="probe", source=path) from exc
        if n <= 0:
            raise VideoError(f"'{path}' has no video frames", stage="probe", source=path)
        ctx = stream.codec_context
        return VideoInfo(
            num_frames=int(n),
            fps=fps,
            width=int(ctx.width),
            height=int(ctx.height),
            duration_s=n / fps,
            codec=ctx.name,
        )


def scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(w, h)`` with the short side equal to ``size`` and the aspect ratio kept."""
    if width <= height:
        return size, max(size, round(height * size / width))
    return max(size, round(width * size / height)), size


def _to_rgb(frame: av.VideoFrame, size: int | None, sar: float = 1.0) -> np.ndarray:
    """One swscale pass (convert + scale), then a centre crop of the array: ``(size, size, 3)``."""
    if size is None:
        return frame.to_ndarray(format="rgb24")
    width, height = frame.width, frame.height
    if sar != 1.0:  # anamorphic: scale for the displayed shape, not the stored one
        width = max(1, round(width * sar))
    sw, sh = scaled_size(width, height, size)
    rgb = frame.to_ndarray(width=sw, height=sh, format="rgb24", interpolation="AREA")
    y0, x0 = (sh - size) // 2, (sw - size) // 2
    return np.ascontiguousarray(rgb[y0 : y0 + size, x0 : x0 + size])


def iter_frames(path: str, size: int | None, step: int = 1) -> Iterator[np.ndarray]:
    """Decode ``path`` sequentially, yielding every ``step``-th frame (0, step, 2*step, ...).

    Yields:
        ``(size, size, 3)`` uint8 RGB frames (short-side resize + centre crop), or
        ``(H, W, 3)`` at native resolution when ``size`` is None.

    Raises:
        VideoError: stage "open"/"probe" before the first frame.
        VideoDecodeError: the stream is damaged or ends before the frame count
            the container promises; frames before that were already yielded.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    with _open(path) as (container, stream):
        expected = stream.frames if any(f in container.format.name for f in _EXACT_COUNT_FORMATS) else 0
        sar = stream.codec_context.sample_aspect_ratio
        sar = float(sar) if sar and sar > 0 else 1.0
        n = 0
        try:
            for frame in container.decode(stream):
                if n % step == 0:  # frames in between are decoded (references) but not converted
                    yield _to_rgb(frame, size, sar)
                n += 1
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(f"'{path}' is damaged after frame {n}: {exc}", source=path) from exc
        if expected > 0 and n < expected:
            raise VideoDecodeError(f"'{path}' ends after {n} of {expected} frames (truncated?)", source=path)
