"""Probe and decode videos with PyAV, reading seekably through pyarrow.fs (local, s3://, gs://).

A :class:`VideoReader` opens a file once: it probes the first video stream
(exact frame count, exact rate), then hands out the frames asked for by
index, in increasing order. It decodes sequentially; when the next wanted
frame lies more than about two GOPs ahead, it seeks to the keyframe before it
instead (only on streams whose timestamps sit on the constant-rate grid, so a
frame's index can be read from its timestamp). Frames that are decoded but not
wanted are never converted.

Frames come out as ``(size, size, 3)`` uint8 RGB: colour conversion and
scaling happen in one swscale call per frame (``interpolation="AREA"``, the
right filter for large downscales), then a centre crop (``short_side_crop``)
or nothing (``exact``, which stretches). That call, not the decode, bounds
ingest speed, so it runs only on frames that are kept, and on one thread:
each Ray read task holds one CPU, and swscale's own slice threads (PyAV's
default: one per core) doubled its CPU cost at ingest's sizes without making
it faster (bench/RESULTS.md, "Ingest").

Failures raise :class:`VideoError` whose ``stage`` says where it happened:
``"open"`` (missing file, not a media container), ``"probe"`` (no video stream,
no frames, unknown rate) or ``"decode"`` (damaged or truncated stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from types import TracebackType
from typing import TypeVar

import av
import numpy as np

from vidgen_core import storage

# Containers whose per-stream frame count comes from the sample table (exact);
# elsewhere (mkv, webm, avi, ...) the header count is missing or a guess.
_EXACT_COUNT_FORMATS = ("mov", "mp4")
# Never seek over fewer frames than this: decoding them is cheaper than a seek's risk of landing early.
_MIN_SEEK_GAP = 32

K = TypeVar("K")


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


def scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(w, h)`` with the short side equal to ``size`` and the aspect ratio kept."""
    if width <= height:
        return size, max(size, round(height * size / width))
    return max(size, round(width * size / height)), size


@cache
def one_thread() -> dict[str, int]:
    """``{"threads": 1}`` for ``VideoFrame.to_ndarray`` where PyAV's reformat takes it, else ``{}``.

    PyAV versions without the argument scale on the calling thread already.
    """
    try:
        av.VideoFrame(16, 16, "yuv420p").reformat(width=8, height=8, format="rgb24", threads=1)
    except TypeError:
        return {}
    return {"threads": 1}


def to_rgb(frame: av.VideoFrame, size: int | None, resize: str = "short_side_crop", sar: float = 1.0) -> np.ndarray:
    """One swscale pass (convert + scale) of a decoded frame: uint8 ``(size, size, 3)``.

    ``short_side_crop`` scales the short side to ``size`` and crops the centre
    (a view of the scaled array: the caller's copy is the only one);
    ``exact`` stretches to ``size`` x ``size``. ``size=None``: native ``(H, W, 3)``.
    """
    if size is None:
        return frame.to_ndarray(format="rgb24", **one_thread())
    if resize == "exact":
        return frame.to_ndarray(width=size, height=size, format="rgb24", interpolation="AREA", **one_thread())
    width, height = frame.width, frame.height
    if sar != 1.0:  # anamorphic: scale for the displayed shape, not the stored one
        width = max(1, round(width * sar))
    sw, sh = scaled_size(width, height, size)
    rgb = frame.to_ndarray(width=sw, height=sh, format="rgb24", interpolation="AREA", **one_thread())
    y0, x0 = (sh - size) // 2, (sw - size) // 2
    return rgb[y0 : y0 + size, x0 : x0 + size]


class VideoReader:
    """One video, opened once through pyarrow.fs as a seekable file.

    Attributes:
        info: the probe result (exact frame count and rate).
        seeks: how many times :meth:`frames` jumped ahead instead of decoding through.
        probe_warning: set when counting packets met damage (the count stops there).

    Usage::

        with VideoReader("s3://bucket/a.mp4") as r:
            for key, rgb in r.frames([("a", 0), ("b", 3)], size=64):
                ...

    Raises:
        VideoError: stage "open" or "probe" from the constructor.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.seeks = 0
        self.probe_warning: str | None = None
        self._file = self._container = None
        self._open()
        try:
            self.info = self._probe()
        except BaseException:
            self.close()
            raise
        stream = self._stream
        self._rate = Fraction(stream.average_rate or stream.guessed_rate or stream.base_rate)
        tb = stream.time_base
        # Timestamp units per frame on the constant-rate grid; None when seeking cannot be used.
        self._pts_per_frame = 1 / (self._rate * tb) if tb else None
        # The same as an integer ratio (p, q): the per-frame grid check then needs no Fraction arithmetic.
        self._ppf_ratio = self._pts_per_frame.as_integer_ratio() if self._pts_per_frame else None
        sar = stream.codec_context.sample_aspect_ratio
        self._sar = float(sar) if sar and sar > 0 else 1.0

    # ------------------------------------------------------------ opening and probing

    def _open(self) -> None:
        try:
            fs, fs_path = storage.resolve(self.path)
            self._file = fs.open_input_file(fs_path)  # random access: MP4 indexes may sit at the end
        except (OSError, ValueError) as exc:  # FileNotFoundError, permission, bad URI
            raise VideoError(f"cannot open '{self.path}': {exc}", stage="open", source=self.path) from exc
        try:
            self._container = av.open(self._file, mode="r")
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.close()
            message = f"'{self.path}' is not a readable media file: {exc}"
            raise VideoError(message, stage="open", source=self.path) from exc
        if not self._container.streams.video:
            self.close()
            raise VideoError(f"'{self.path}' has no video stream", stage="probe", source=self.path)
        self._stream = self._container.streams.video[0]

    def _exact_count(self) -> bool:
        return any(f in self._container.format.name for f in _EXACT_COUNT_FORMATS)

    def _probe(self) -> VideoInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise VideoError(f"'{self.path}' has no usable frame rate", stage="probe", source=self.path)
        n = stream.frames if self._exact_count() else 0
        if n <= 0:
            # Count packets by demuxing (no decoding, so it is cheap), then start over.
            try:
                for pkt in self._container.demux(stream):
                    n += pkt.size > 0
            except (av.error.FFmpegError, OSError) as exc:
                self.probe_warning = f"'{self.path}' is damaged after packet {n}: {exc}"
            self.close()
            self._open()
        if n <= 0:
            raise VideoError(f"'{self.path}' has no video frames", stage="probe", source=self.path)
        ctx = self._stream.codec_context
        return VideoInfo(
            num_frames=int(n),
            fps=float(rate),
            width=int(ctx.width),
            height=int(ctx.height),
            duration_s=n / float(rate),
            codec=ctx.name,
        )

    # ------------------------------------------------------------ decoding

    def frames(
        self, wanted: Iterable[tuple[K, int]], size: int | None, resize: str = "short_side_crop"
    ) -> Iterator[tuple[K, np.ndarray]]:
        """Yield ``(key, rgb)`` for each ``(key, frame index)`` of ``wanted``.

        Indices must not decrease; a repeated index gets the same converted frame.
        ``rgb`` is uint8 ``(size, size, 3)`` (see :func:`to_rgb`).

        Raises:
            VideoDecodeError: damage, or the stream ends before a wanted frame;
                the frames before it were already yielded.
        """
        self._state = _DecodeState()
        decoded = self._decode(None)
        last_index, last_rgb, n = -1, None, -1
        try:
            for key, target in wanted:
                if target == last_index:
                    yield key, last_rgb
                    continue
                if target < last_index:
                    raise ValueError(f"frame indices must not decrease: {target} after {last_index}")
                if self._should_seek(n, target):
                    decoded.close()
                    decoded = self._decode(target)
                n, frame = self._advance(decoded, target, n)
                if n > target:  # a seek landed past the target: start over without seeking
                    decoded.close()
                    self._state.no_seek = True
                    self.close()
                    self._open()
                    decoded = self._decode(None)
                    n, frame = self._advance(decoded, target, -1)
                last_index, last_rgb = target, to_rgb(frame, size, resize, self._sar)
                yield key, last_rgb
        finally:
            decoded.close()

    def _advance(
        self, decoded: Iterator[tuple[int, av.VideoFrame]], target: int, n: int
    ) -> tuple[int, av.VideoFrame]:
        """The first decoded frame with index >= ``target`` (frames before it are not converted)."""
        for n, frame in decoded:
            if n >= target:
                return n, frame
        raise VideoDecodeError(
            f"'{self.path}' ends after {n + 1} of {self.info.num_frames} frames (truncated?)", source=self.path
        )

    def _should_seek(self, n: int, target: int) -> bool:
        st = self._state
        if st.no_seek or st.pts0 is None or self._pts_per_frame is None or n < 0:
            return False
        # A GOP is at least the largest keyframe distance seen and the run since the last keyframe.
        gop = max(st.max_key_gap, n - st.last_key)
        return target - n > max(2 * gop, _MIN_SEEK_GAP)

    def _on_grid(self, pts: int | None, n: int) -> bool:
        """Whether frame ``n`` has the timestamp the constant-rate grid gives it (within half a frame)."""
        pts0 = self._state.pts0
        if pts is None or pts0 is None or self._ppf_ratio is None:
            return False
        # |pts - pts0 - n·p/q| <= p/(2q), times 2q: exact, in integers. As Fractions it cost 4.1 us a
        # frame against 0.09 us (bench/RESULTS.md, "Ingest").
        p, q = self._ppf_ratio
        return abs(q * (pts - pts0) - n * p) * 2 <= p

    def _decode(self, seek_to: int | None) -> Iterator[tuple[int, av.VideoFrame]]:
        """Decoded frames with their index: counted from the start, or read from timestamps after a seek."""
        st = self._state
        if seek_to is not None:
            self._container.seek(int(st.pts0 + seek_to * self._pts_per_frame), stream=self._stream, backward=True)
            self.seeks += 1
        n = -1
        try:
            for frame in self._container.decode(self._stream):
                if seek_to is None:
                    n += 1
                    if n == 0:
                        st.pts0 = frame.pts
                    elif not self._on_grid(frame.pts, n):
                        st.no_seek = True  # variable rate or missing pts: indices only from counting
                else:
                    if frame.pts is None:
                        raise VideoDecodeError(f"'{self.path}' lost its timestamps after a seek", source=self.path)
                    n = round((frame.pts - st.pts0) / self._pts_per_frame)
                if frame.key_frame:
                    if st.last_key >= 0 and seek_to is None:
                        st.max_key_gap = max(st.max_key_gap, n - st.last_key)
                    st.last_key = n
                yield n, frame
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoDecodeError(f"'{self.path}' is damaged after frame {n}: {exc}", source=self.path) from exc

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class _DecodeState:
    pts0: int | None = None  # timestamp of frame 0
    no_seek: bool = False
    last_key: int = -1
    max_key_gap: int = 0


def probe(path: str) -> VideoInfo:
    """Describe the first video stream of ``path``; ``num_frames`` is exact.

    MP4/MOV give an exact count from their sample table; for other containers
    the video packets are counted by demuxing (no decoding, so it is cheap).
    """
    with VideoReader(path) as reader:
        return reader.info


def iter_frames(path: str, size: int | None, step: int = 1, resize: str = "short_side_crop") -> Iterator[np.ndarray]:
    """Decode ``path`` sequentially, yielding every ``step``-th frame (0, step, 2*step, ...).

    Yields:
        ``(size, size, 3)`` uint8 RGB frames (see :func:`to_rgb`), or
        ``(H, W, 3)`` at native resolution when ``size`` is None.

    Raises:
        VideoError: stage "open"/"probe" before the first frame.
        VideoDecodeError: the stream is damaged or ends before the frame count
            the container promises; frames before that were already yielded.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    with VideoReader(path) as reader:
        wanted = ((i, i) for i in range(0, reader.info.num_frames, step))
        for _, rgb in reader.frames(wanted, size, resize):
            yield rgb
