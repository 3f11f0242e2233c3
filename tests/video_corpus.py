"""Test videos made with PyAV: frames that encode their own index, and a corpus of broken and odd files.

Imported by tests as ``from video_corpus import ...`` (tests/ is on sys.path through its conftest).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 16  # a 4x4 grid of black/white blocks: frame indices up to 65535


def index_frame(i: int, height: int = 64, width: int = 64) -> np.ndarray:
    """uint8 ``(height, width, 3)`` frame showing ``i`` in binary as a 4x4 grid of blocks (bit 0 top-left)."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    for b in range(BITS):
        if i >> b & 1:
            r, c = divmod(b, 4)
            frame[r * height // 4 : (r + 1) * height // 4, c * width // 4 : (c + 1) * width // 4] = 255
    return frame


def read_index(rgb: np.ndarray) -> int:
    """The index :func:`index_frame` drew, read from the block centres of a (resized) ``(H, W, 3)`` frame."""
    h, w = rgb.shape[:2]
    value = 0
    for b in range(BITS):
        r, c = divmod(b, 4)
        y, x = (2 * r + 1) * h // 8, (2 * c + 1) * w // 8
        if rgb[y, x].mean() > 127:
            value |= 1 << b
    return value


def write_video(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    fps: float | Fraction = 12,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fmt: str | None = None,
    gop: int | None = None,
    pts: list[int] | None = None,
    x264_params: str = "",
    sar: Fraction | None = None,
    faststart: bool = True,
) -> None:
    """Encode ``frames`` (each uint8 ``(H, W, 3)``); ``pts`` in units of ``1/(fps * 10)`` makes a variable rate.

    ``x264_params`` (e.g. ``"interlaced=1:tff=1"``) and ``sar`` (sample aspect ratio) go to libx264;
    ``faststart=False`` leaves an MP4's index at the end, where a truncated copy loses it.
    """
    rate = Fraction(fps).limit_denominator(1001)
    # faststart puts the MP4 index first, so a truncated copy stays readable up to the damage.
    options = {"movflags": "+faststart"} if faststart and str(path).endswith(".mp4") else {}
    with av.open(str(path), "w", format=fmt, options=options) as c:
        stream = c.add_stream(codec, rate=rate)
        h, w = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        tb = 1 / (rate * 10) if pts is not None else 1 / rate
        stream.codec_context.time_base = tb
        if gop is not None:
            stream.codec_context.gop_size = gop
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast", "threads": "1",
                              **({"sc_threshold": "0"} if gop else {}),
                              **({"x264-params": x264_params} if x264_params else {})}
        elif codec.startswith("libvpx"):
            stream.options = {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8", "threads": "1"}
        else:
            stream.options = {"qscale": "2"}
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = (pts[i] if pts is not None else i), tb
            c.mux(stream.encode(vf))
        c.mux(stream.encode(None))


def write_audio_only(path: Path) -> None:
    """An AAC-in-MP4 file with no video stream."""
    with av.open(str(path), "w", format="mp4") as c:
        stream = c.add_stream("aac", rate=8000)
        for k in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, k * 1024
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))


def truncate_within_packet(src: Path, dst: Path, keep_fraction: float) -> None:
    """Copy ``src`` cut in the middle of the video packet at ``keep_fraction`` of its packets."""
    with av.open(str(src)) as c:
        packets = [p for p in c.demux(video=0) if p.size > 0]
        pkt = packets[int(len(packets) * keep_fraction)]
    dst.write_bytes(src.read_bytes()[: pkt.pos + pkt.size // 2])


def indexed(n: int, height: int = 64, width: int = 64, start: int = 0) -> list[np.ndarray]:
    return [index_frame(start + i, height, width) for i in range(n)]


def make_corpus(root: Path) -> dict[str, dict]:
    """Broken and odd files under ``root/<class>/``; returns ``{relative path: expectation}``.

    An expectation has ``stage`` (the error stage, or None for a clean file),
    ``clips`` (True if the file must give clips) and, for errors, ``error_type``.
    """
    for d in ("good", "odd", "bad"):
        (root / d).mkdir(parents=True, exist_ok=True)
    write_video(root / "good" / "h264.mp4", indexed(40), fps=12)
    write_video(root / "good" / "long.mp4", indexed(60, start=100), fps=12)
    write_video(root / "odd" / "vp9.webm", indexed(30), fps=15, codec="libvpx-vp9", fmt="webm")
    write_video(root / "odd" / "mpeg4.avi", indexed(30), fps=25, codec="mpeg4", fmt="avi")
    # yuv444p lets H.264 carry odd sizes; the resize path must not assume even ones.
    write_video(root / "odd" / "oddsize.mp4", indexed(24, height=37, width=51), fps=10, pix_fmt="yuv444p")
    # Variable rate: gaps of 1, 2 or 3 frame periods between timestamps.
    gaps = np.random.default_rng(0).integers(1, 4, size=30)
    write_video(root / "odd" / "vfr.mkv", indexed(30), fps=20, fmt="matroska", pts=[0, *np.cumsum(gaps[:-1] * 10)])
    (root / "bad" / "zero.mp4").write_bytes(b"")
    (root / "bad" / "text.mp4").write_text("this is not a video\n" * 20)
    (root / "bad" / "noise.mkv").write_bytes(np.random.default_rng(1).bytes(8192))
    write_audio_only(root / "bad" / "audio.mp4")
    write_video(root / "bad" / "short.mp4", indexed(3), fps=12)
    truncate_within_packet(root / "good" / "long.mp4", root / "bad" / "cut.mp4", 0.6)
    clean = {"stage": None, "clips": True}
    return {
        "good/h264.mp4": clean,
        "good/long.mp4": clean,
        "odd/vp9.webm": clean,
        "odd/mpeg4.avi": clean,
        "odd/oddsize.mp4": clean,
        "odd/vfr.mkv": clean,
        **{f"bad/{name}": _broken("open", "InvalidDataError") for name in ("zero.mp4", "text.mp4", "noise.mkv")},
        "bad/audio.mp4": _broken("probe", "VideoError"),
        "bad/short.mp4": _broken("plan", "TooShort"),
        "bad/cut.mp4": _broken("decode", "InvalidDataError", clips=True),
    }


def _broken(stage: str, error_type: str | None, clips: bool = False) -> dict:
    """What ingest must record for a file that fails at ``stage`` (``clips``: some clips kept before it)."""
    return {"stage": stage, "clips": clips, "error_type": error_type}


def make_more_kinds(root: Path) -> dict[str, dict]:
    """Eight more kinds of odd and broken files under ``root/odd`` and ``root/bad`` (expectations as
    :func:`make_corpus`; ``error_type`` None: any specific reason). With :func:`make_corpus`: 20 kinds."""
    for d in ("odd", "bad"):
        (root / d).mkdir(parents=True, exist_ok=True)
    write_video(root / "odd" / "tenbit.mp4", indexed(30), pix_fmt="yuv420p10le")
    write_video(root / "odd" / "interlaced.mp4", indexed(30), x264_params="interlaced=1:tff=1")
    write_video(root / "odd" / "anamorphic.mp4", indexed(30), sar=Fraction(2, 1))
    one_pixel = [np.full((1, 1, 3), 40 * (i % 6), np.uint8) for i in range(30)]
    write_video(root / "odd" / "one_pixel.mkv", one_pixel, codec="ffv1", pix_fmt="bgr0", fmt="matroska")
    write_video(root / "odd" / "mp4_named.avi", indexed(30), fmt="mp4")  # content and extension disagree
    write_video(root / "bad" / "one_frame.mp4", indexed(1))
    write_video(root / "bad" / "moov_missing.mp4", indexed(40), faststart=False)  # index at the end, then cut in half
    data = (root / "bad" / "moov_missing.mp4").read_bytes()
    (root / "bad" / "moov_missing.mp4").write_bytes(data[: len(data) // 2])
    # A YUV4MPEG header declaring 40000x40000 pixels (6.4 GB a frame) over a few bytes, named .mkv.
    (root / "bad" / "huge_header.mkv").write_bytes(
        b"YUV4MPEG2 W40000 H40000 F12:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000)
    )
    clean = {"stage": None, "clips": True}
    return {
        **{f"odd/{name}": clean for name in ("tenbit.mp4", "interlaced.mp4", "anamorphic.mp4", "one_pixel.mkv", "mp4_named.avi")},
        "bad/one_frame.mp4": _broken("plan", "TooShort"),
        "bad/moov_missing.mp4": _broken("open", "InvalidDataError"),
        "bad/huge_header.mkv": _broken("open", None),
    }
