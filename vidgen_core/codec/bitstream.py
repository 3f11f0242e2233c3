"""The ``.vgc`` file format: a versioned header, then length-prefixed records of range-coded latents.

Layout (integers little-endian)::

    magic            4 bytes  b"VGCF"
    format_version   u8       1
    name_len         u8       then the registered model name (ASCII, [A-Za-z0-9][A-Za-z0-9_.-]*)
    model_version    u32      registered version (0: a model that is not registered)
    model_digest     8 bytes  identity of the weights + probability model (see codec.prior)
    frames           u32      frames in the video (after decoding, before any time padding)
    fps_num, fps_den u32, u32 exact frame rate
    height, width    u16, u16 the video's size (what decompress crops back to)
    pad_h, pad_w     u8, u8   rows/columns added to reach the VAE's spatial stride
    window           u16      frames per VAE window (the last one may be shorter)
    quality          u8       rate setting: index into the probability model's step table
    step             f32      the quantisation step of that setting (cross-checked on decode)
    header_crc       u32      CRC-32 of every header byte before it

    record*          varint byte length, then that many bytes: one range-coder stream
                     holding up to ``RECORD_WINDOWS`` windows' quantised latents

The number of records follows from ``frames`` and ``window``: a file that ends
early is reported as truncated, and bytes after the last record as foreign.
Nothing in the header is trusted before it is checked: a bad value is one line.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

from vidgen_core.errors import UserError

MAGIC = b"VGCF"
FORMAT_VERSION = 1
RECORD_WINDOWS = 8  # VAE windows per range-coder stream: ~8 bytes of coder overhead per record
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # MLflow-safe, no path parts
MAX_SIDE = 16384
MAX_FRAMES = 1 << 28
_FIXED = struct.Struct("<I8sIIIHHBBHBf")  # version, digest, frames, fps num/den, h, w, pads, window, quality, step


class BitstreamError(UserError):
    """A ``.vgc`` file that cannot be decoded (foreign, truncated, damaged); one-line message."""


@dataclass(frozen=True)
class Header:
    """What a ``.vgc`` file says about itself (see the module docstring for the byte layout)."""

    model_name: str
    model_version: int
    model_digest: bytes  # 8 bytes
    frames: int
    fps: Fraction
    height: int
    width: int
    pad_h: int
    pad_w: int
    window: int
    quality: int
    step: float

    def __post_init__(self) -> None:
        # The file stores the step as float32: hold exactly what a reader will get back.
        try:
            object.__setattr__(self, "step", struct.unpack("<f", struct.pack("<f", self.step))[0])
        except (OverflowError, struct.error, TypeError):
            raise BitstreamError(f"header: bad quantisation step {self.step!r}") from None
        check_header(self)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.model_version}"

    @property
    def num_windows(self) -> int:
        return -(-self.frames // self.window)

    @property
    def num_records(self) -> int:
        return -(-self.num_windows // RECORD_WINDOWS)


def check_header(h: Header, where: str = "header") -> None:
    """Raise BitstreamError (one line) unless every field of ``h`` is in range."""

    def bad(what: str) -> BitstreamError:
        return BitstreamError(f"{where}: {what}")

    if not isinstance(h.model_name, str) or not NAME_PATTERN.match(h.model_name):
        raise bad(f"bad model name {h.model_name!r} (letters, digits, '_', '.', '-' only, no path)")
    if ".." in h.model_name:
        raise bad(f"bad model name {h.model_name!r} (no '..')")
    if not 0 <= h.model_version < 1 << 32:
        raise bad(f"bad model version {h.model_version}")
    if len(h.model_digest) != 8:
        raise bad("model digest must be 8 bytes")
    if not 1 <= h.frames <= MAX_FRAMES:
        raise bad(f"bad frame count {h.frames}")
    if h.fps <= 0 or h.fps > 1000 or h.fps.denominator >= 1 << 32 or h.fps.numerator >= 1 << 32:
        raise bad(f"bad frame rate {h.fps}")
    if not (1 <= h.height <= MAX_SIDE and 1 <= h.width <= MAX_SIDE):
        raise bad(f"bad size {h.width}x{h.height}")
    if not (0 <= h.pad_h < 256 and 0 <= h.pad_w < 256):
        raise bad(f"bad padding {h.pad_h},{h.pad_w}")
    if not 1 <= h.window <= 4096:
        raise bad(f"bad window {h.window}")
    if not 0 <= h.quality < 256:
        raise bad(f"bad quality {h.quality}")
    if not (h.step > 0 and h.step < 1e6):
        raise bad(f"bad quantisation step {h.step}")


def pack_header(h: Header) -> bytes:
    """The header's bytes, CRC included."""
    name = h.model_name.encode("ascii")
    body = MAGIC + bytes([FORMAT_VERSION, len(name)]) + name + _FIXED.pack(
        h.model_version, h.model_digest, h.frames, h.fps.numerator, h.fps.denominator, h.height, h.width,
        h.pad_h, h.pad_w, h.window, h.quality, h.step,
    )
    return body + struct.pack("<I", zlib.crc32(body))


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise BitstreamError(f"truncated .vgc file: it ends inside the {what}")
    return data


def read_header(f: BinaryIO) -> Header:
    """Parse and check the header at the start of ``f``.

    Raises:
        BitstreamError: not a .vgc file, an unknown format version, a truncated or
            damaged header, or a value out of range (one line each).
    """
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise BitstreamError("not a vidgen .vgc file (wrong magic bytes)")
    head = _read_exact(f, 2, "header")
    if head[0] != FORMAT_VERSION:
        raise BitstreamError(f".vgc format version {head[0]} is not supported (this vidgen reads version {FORMAT_VERSION})")
    raw_name = _read_exact(f, head[1], "header")
    fixed = _read_exact(f, _FIXED.size, "header")
    (crc,) = struct.unpack("<I", _read_exact(f, 4, "header"))
    if zlib.crc32(magic + head + raw_name + fixed) != crc:
        raise BitstreamError("damaged .vgc file: the header checksum does not match")
    try:
        name = raw_name.decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("header: the model name is not ASCII") from None
    version, digest, frames, num, den, height, width, pad_h, pad_w, window, quality, step = _FIXED.unpack(fixed)
    if den == 0:
        raise BitstreamError("header: bad frame rate (denominator 0)")
    return Header(name, version, digest, frames, Fraction(num, den), height, width, pad_h, pad_w, window, quality, step)


def write_record(f: BinaryIO, payload: bytes) -> int:
    """Append one record (varint length + payload); returns the bytes written."""
    n = len(payload)
    prefix = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        prefix.append(byte | (0x80 if n else 0))
        if not n:
            break
    f.write(bytes(prefix))
    f.write(payload)
    return len(prefix) + len(payload)


def read_record(f: BinaryIO, max_bytes: int = 1 << 30) -> bytes:
    """The next record's payload. Raises BitstreamError when the file ends inside it."""
    n, shift = 0, 0
    while True:
        b = f.read(1)
        if not b:
            raise BitstreamError("truncated .vgc file: it ends before the last frames")
        n |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
        if shift > 35:
            raise BitstreamError("damaged .vgc file: bad record length")
    if n > max_bytes:
        raise BitstreamError("damaged .vgc file: a record claims more bytes than a video can hold")
    return _read_exact(f, n, "last record")


def check_end(f: BinaryIO) -> None:
    """Raise BitstreamError if bytes follow the last record (a damaged or concatenated file)."""
    if f.read(1):
        raise BitstreamError("damaged .vgc file: unexpected bytes after the last record")
