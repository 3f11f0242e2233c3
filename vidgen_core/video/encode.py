"""Write uint8 RGB frames as H.264 MP4 (or GIF) with PyAV.

Frames are ``(H, W, 3)`` uint8 RGB; clips are ``(T, H, W, 3)``. Local paths are
written directly; remote URIs (``s3://``...) are written to a local temporary
file and uploaded on close, because the MP4 muxer must seek back to finish
the file and object-store output streams cannot seek.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from vidgen_core import storage
from vidgen_core.video.decode import one_thread


def frame_rate(fps: float) -> Fraction:
    """Exact rational frame rate for ``fps`` (12.0 -> 12, 29.97 -> 2997/100, 30000/1001 stays)."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def encoder_frame(frame: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """An ``(H, W, 3)`` uint8 RGB frame as a VideoFrame in the encoder's ``pix_fmt``, converted on one thread.

    Given RGB, PyAV's encoder would convert it itself, starting swscale threads for every frame.
    """
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format=pix_fmt, **one_thread())


def _even(frame: np.ndarray) -> np.ndarray:
    # yuv420p subsamples chroma 2x2, so libx264 needs even sizes: repeat the last
    # row/column rather than refuse (model outputs may be odd-sized).
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


class _Output:
    """A local file path to write, uploaded to ``uri`` on close when remote."""

    def __init__(self, uri: str | Path, suffix: str) -> None:
        self.uri = str(uri)
        self.remote = storage.is_remote(self.uri)
        if self.remote:
            fd, self.local = tempfile.mkstemp(suffix=suffix)
            os.close(fd)
        else:
            self.local = storage.resolve(self.uri)[1]
            Path(self.local).parent.mkdir(parents=True, exist_ok=True)

    def finish(self, ok: bool) -> None:
        """Upload (remote) or keep (local) the file if ``ok``; never leave a partial file behind."""
        try:
            if ok and self.remote:
                fs, path = storage.resolve(self.uri)
                with open(self.local, "rb") as src, fs.open_output_stream(path) as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
        finally:
            if (self.remote or not ok) and os.path.exists(self.local):
                os.unlink(self.local)


class Mp4Writer:
    """Stream frames into an H.264 MP4 (libx264, yuv420p) at an exact frame rate.

    Frame ``i`` gets ``pts = i`` in a codec time base of ``1/fps``, so the file's
    frame rate is exactly ``fps``. ``moov`` is moved to the front (faststart) so
    the file streams from object storage and a truncated file stays readable up
    to the damage. The defaults make the output bit-exact across runs (see ``_open_stream``).

    Usage::

        with Mp4Writer("a.mp4", fps=12) as w:
            for frame in frames:  # (H, W, 3) uint8
                w.write(frame)
    """

    def __init__(
        self, path: str | Path, fps: float = 8.0, crf: int = 18, preset: str = "veryfast", threads: int = 1
    ) -> None:
        self._out = _Output(path, ".mp4")
        self._rate = frame_rate(fps)
        self._crf, self._preset, self._threads = crf, preset, threads
        self._container = av.open(self._out.local, "w", format="mp4", options={"movflags": "+faststart"})
        self._stream: av.VideoStream | None = None
        self._count = 0

    def _open_stream(self, height: int, width: int) -> av.VideoStream:
        stream = self._container.add_stream("libx264", rate=self._rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / self._rate
        # Reproducible output (synth data sets must be bit-exact from their seed):
        # several x264 threads make timing-dependent decisions, and measured here
        # the macroblock-tree lookahead's SIMD code gives run-to-run differences on
        # some small frames (e.g. 32x24); mbtree=0 costs a little quality at a given crf.
        stream.options = {
            "crf": str(self._crf),
            "preset": self._preset,
            "threads": str(self._threads),
            "x264-params": "mbtree=0",
        }
        return stream

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame; all frames must share one size."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        frame = _even(frame)
        if self._stream is None:
            self._stream = self._open_stream(frame.shape[0], frame.shape[1])
        elif (frame.shape[0], frame.shape[1]) != (self._stream.height, self._stream.width):
            raise ValueError(
                f"frame size {frame.shape[1]}x{frame.shape[0]} differs from the stream's "
                f"{self._stream.width}x{self._stream.height}"
            )
        vf = encoder_frame(frame, self._stream.pix_fmt)
        vf.pts, vf.time_base = self._count, 1 / self._rate
        self._container.mux(self._stream.encode(vf))
        self._count += 1

    def close(self, ok: bool = True) -> None:
        """Flush the encoder and finish the file (upload it if the target is remote).

        With ``ok=False`` (an exception while writing) the partial file is removed.
        """
        if self._container is None:
            return
        container, self._container = self._container, None
        empty = self._stream is None
        complain = ok and empty  # an empty file is an error unless another one is already in flight
        ok = ok and not empty
        try:
            if ok:
                container.mux(self._stream.encode(None))
        except BaseException:
            ok = False
            raise
        finally:
            try:
                container.close()
            finally:
                self._out.finish(ok)
        if complain:
            raise ValueError("cannot write an MP4 with no frames")

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(ok=exc_type is None)


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = 8.0) -> None:
    """Write ``frames`` (T, H, W, 3) uint8 RGB as an H.264 MP4 at exactly ``fps``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"expected frames of shape (T, H, W, 3) with T >= 1, got {frames.shape}")
    with Mp4Writer(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)


def write_gif(frames: np.ndarray, path: str | Path, fps: float = 8.0) -> None:
    """Write ``frames`` (T, H, W, 3) uint8 RGB as an animated GIF (for quick looks in MLflow).

    GIF stores delays in 1/100 s, so the played rate is ``fps`` rounded to that grid.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames with T >= 1, got {frames.shape} {frames.dtype}")
    out = _Output(path, ".gif")
    rate = frame_rate(fps)
    ok = False
    container = av.open(out.local, "w", format="gif")
    try:
        stream = container.add_stream("gif", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb8"
        for i, frame in enumerate(frames):
            vf = encoder_frame(frame, stream.pix_fmt)
            vf.pts, vf.time_base = i, 1 / rate
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
        ok = True
    finally:
        container.close()
        out.finish(ok)
