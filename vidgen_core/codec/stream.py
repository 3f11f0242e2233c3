"""Compress a stream of frames into ``.vgc`` bytes and back, one window at a time.

Memory is bounded by one window of frames plus one record's symbols
(``RECORD_WINDOWS`` windows of latents): nothing grows with the video's length.

    compress_frames(model, frames, out, ...)      frames: any iterable of uint8 (H, W, 3)
    open_vgc(f) -> Header                          read and check the header
    decompress_frames(model, header, f)            yields uint8 (n, H, W, 3) per window
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import constriction
import numpy as np

from vidgen_core.codec.bitstream import (
    RECORD_WINDOWS, BitstreamError, Header, check_end, pack_header, read_header, read_record, write_record,
)
from vidgen_core.codec.entropy import LatentCoder
from vidgen_core.codec.model import CodecModel
from vidgen_core.errors import UserError


@dataclass(frozen=True)
class Compressed:
    """What :func:`compress_frames` wrote: sizes and the bits per pixel from the byte count."""

    header: Header
    num_bytes: int  # header + records: the whole file

    @property
    def bpp(self) -> float:
        return 8.0 * self.num_bytes / (self.header.frames * self.header.height * self.header.width)


def _windows(frames: Iterable[np.ndarray], window: int) -> Iterator[np.ndarray]:
    buf: list[np.ndarray] = []
    shape = None
    for frame in frames:
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise UserError(f"frame size changed from {shape[1]}x{shape[0]} to {frame.shape[1]}x{frame.shape[0]} mid-video")
        buf.append(frame)
        if len(buf) == window:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)


def compress_frames(
    model: CodecModel, frames: Iterable[np.ndarray], out: BinaryIO, *, fps: float | Fraction, quality: int,
    on_frames: Callable[[int], None] | None = None, encode: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Compressed:
    """Code uint8 RGB frames ``(H, W, 3)`` into ``out`` (seekable: the header is completed at the end).

    ``encode`` (window frames -> latents) replaces ``model.encode_window``, e.g. to
    replay latents already computed when the same video is coded at several rates.

    Raises:
        UserError: no frames, frames of changing size, a bad quality.
    """
    from vidgen_core.video.encode import frame_rate

    quality = model.prior.check_quality(quality)
    rate = Fraction(fps) if isinstance(fps, Fraction) else frame_rate(float(fps))
    start = out.tell()
    coder = LatentCoder(model.prior, quality)
    header: Header | None = None
    encoder = constriction.stream.queue.RangeEncoder()
    in_record, total = 0, 0
    size = 0
    for win in _windows(frames, model.window):
        if header is None:
            h, w = win.shape[1:3]
            pad_h, pad_w = model.padding(h, w)
            header = Header(model.name, model.version, model.digest, 1, rate, h, w, pad_h, pad_w, model.window,
                            quality, float(model.prior.steps[quality]))
            size += out.write(pack_header(header))  # frame count patched below
        z = model.encode_window(win) if encode is None else encode(win)
        coder.encode_window(encoder, model.prior.quantise(z, quality))
        total += len(win)
        in_record += 1
        if in_record == RECORD_WINDOWS:
            size += write_record(out, encoder.get_compressed().tobytes())
            encoder, in_record = constriction.stream.queue.RangeEncoder(), 0
        if on_frames is not None:
            on_frames(len(win))
    if header is None:
        raise UserError("the video has no frames")
    if in_record:
        size += write_record(out, encoder.get_compressed().tobytes())
    header = dataclasses.replace(header, frames=total)
    end = out.tell()
    out.seek(start)
    out.write(pack_header(header))
    out.seek(end)
    return Compressed(header, size)


def open_vgc(f: BinaryIO) -> Header:
    """Read and check the header (BitstreamError: one line)."""
    return read_header(f)


def check_model(model: CodecModel, header: Header) -> None:
    """Refuse (one line) a model other than the one that wrote the file."""
    if model.digest != header.model_digest:
        raise UserError(
            f"this file was made by {header.model_uri} (digest {header.model_digest.hex()}); "
            f"{model.uri} (digest {model.digest.hex()}) cannot decode it: pass -m {header.model_uri}"
        )
    if header.window != model.window or header.quality >= model.prior.num_qualities or \
            abs(model.prior.steps[header.quality] - header.step) > 1e-6 * header.step:
        raise BitstreamError("header: window or rate setting does not match the model's probability model")


def decompress_frames(model: CodecModel, header: Header, f: BinaryIO,
                      on_frames: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """Yield the decoded video, uint8 ``(n, H, W, 3)`` per window, in order.

    Raises:
        UserError: another model wrote the file; BitstreamError: truncated or damaged records.
    """
    check_model(model, header)
    t_stride, s_stride = model.strides
    hp, wp = header.height + header.pad_h, header.width + header.pad_w
    if hp % s_stride or wp % s_stride:
        raise BitstreamError("header: padding does not reach the model's spatial stride")
    coder = LatentCoder(model.prior, header.quality)
    channels = model.prior.channels
    remaining = header.frames
    for _ in range(header.num_records):
        payload = read_record(f)
        if len(payload) % 4 or not payload:
            raise BitstreamError("damaged .vgc file: a record is not a whole number of 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype=np.uint32).copy())
        for _ in range(min(RECORD_WINDOWS, -(-remaining // header.window))):
            n = min(header.window, remaining)
            t_lat = -(-n // t_stride)
            q = coder.decode_window(decoder, (channels, t_lat, hp // s_stride, wp // s_stride))
            remaining -= n
            if on_frames is not None:
                on_frames(n)
            yield model.decode_window(q, header.quality, n, header.height, header.width)
    check_end(f)
