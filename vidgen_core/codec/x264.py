"""The H.264 anchor: libx264 through PyAV on the very frames vidgen codes, measured the same way.

* Encoder: libx264, ``-tune psnr``, a CRF, a preset, ``yuv420p`` (what users
  ship) or ``yuv444p``, one thread (deterministic). RGB -> YUV and back by
  swscale with its defaults (BT.601), as any player would.
* Bytes: the raw H.264 elementary stream (Annex B) the encoder emits, SPS/PPS
  included, **no container** on either side (a ``.vgc`` file has no container
  either; its whole size, header included, is counted). The one SEI message in
  which x264 writes its version and option string (~0.5-0.7 kB, ignored by
  decoders) is removed before counting, and the stream is decoded *without* it
  to prove it is not needed. ``raw_bytes`` keeps the count with it.
* Distortion: decoded frames converted to RGB, padding cropped, then the same
  PSNR/SSIM functions as for vidgen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from vidgen_core.video.decode import one_thread
from vidgen_core.video.encode import encoder_frame

_X264_SEI_TAG = b"x264 - core"


@dataclass(frozen=True)
class X264Result:
    """One encode + decode of a clip: decoded RGB frames, byte counts, seconds."""

    frames: np.ndarray  # uint8 (T, H, W, 3), cropped to the input's size
    num_bytes: int  # stream bytes without x264's version SEI
    raw_bytes: int  # stream bytes as emitted
    encode_s: float
    decode_s: float


def split_annexb(stream: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream, each with its start code."""
    starts = []
    i = stream.find(b"\x00\x00\x01")
    while i >= 0:
        s = i - 1 if i > 0 and stream[i - 1] == 0 else i  # 4-byte start code
        starts.append(s)
        i = stream.find(b"\x00\x00\x01", i + 3)
    return [stream[a:b] for a, b in zip(starts, starts[1:] + [len(stream)])]


def strip_x264_sei(stream: bytes) -> bytes:
    """The stream without x264's version/options SEI (NAL type 6 holding ``x264 - core``)."""
    out = []
    for nal in split_annexb(stream):
        head = nal.lstrip(b"\x00")[1:2]  # byte after the 0x01 of the start code
        if head and head[0] & 0x1F == 6 and _X264_SEI_TAG in nal:
            continue
        out.append(nal)
    return b"".join(out)


def _even_pad(frames: np.ndarray, pix_fmt: str) -> np.ndarray:
    if pix_fmt != "yuv420p":
        return frames
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frames


def encode_x264(frames: np.ndarray, fps: float, crf: int, preset: str = "veryslow", pix_fmt: str = "yuv420p",
                tune: str = "psnr") -> X264Result:
    """Encode uint8 RGB ``(T, H, W, 3)`` with libx264 and decode it back (see the module docstring)."""
    t_len, h, w = frames.shape[:3]
    padded = _even_pad(frames, pix_fmt)
    rate = Fraction(fps).limit_denominator(1001)
    start = time.perf_counter()
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = padded.shape[2], padded.shape[1], pix_fmt
    enc.time_base, enc.framerate = 1 / rate, rate
    enc.options = {"crf": str(crf), "preset": preset, "tune": tune, "threads": "1"}
    chunks = []
    for i, frame in enumerate(padded):
        vf = encoder_frame(frame, pix_fmt)
        vf.pts = i
        chunks.extend(bytes(p) for p in enc.encode(vf))
    chunks.extend(bytes(p) for p in enc.encode(None))
    encode_s = time.perf_counter() - start
    raw = b"".join(chunks)
    stream = strip_x264_sei(raw)

    start = time.perf_counter()
    dec = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    out = []
    for packet in dec.parse(stream) + dec.parse(None):
        out.extend(f.to_ndarray(format="rgb24", **one_thread()) for f in dec.decode(packet))
    out.extend(f.to_ndarray(format="rgb24", **one_thread()) for f in dec.decode(None))
    decode_s = time.perf_counter() - start
    if len(out) != t_len:
        raise RuntimeError(f"libx264 round trip gave {len(out)} frames for {t_len}")
    decoded = np.stack(out)[:, :h, :w]
    return X264Result(decoded, len(stream), len(raw), encode_s, decode_s)
