"""Video file <-> ``.vgc`` file: PyAV in, PyAV out, temporary names, a progress bar.

Outputs are written under a temporary name beside the target and renamed at
the end, so a failure (bad input, wrong model, Ctrl-C) leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidgen_core.codec.bitstream import BitstreamError, Header
from vidgen_core.codec.model import CodecModel
from vidgen_core.codec.stream import Compressed, compress_frames, decompress_frames, open_vgc
from vidgen_core.errors import UserError


@dataclass(frozen=True)
class FileResult:
    """One compress or decompress: the file written, its header, sizes and speed."""

    out: str
    header: Header
    num_bytes: int  # of the .vgc file
    seconds: float

    @property
    def bpp(self) -> float:
        return 8.0 * self.num_bytes / (self.header.frames * self.header.height * self.header.width)

    @property
    def frames_per_s(self) -> float:
        return self.header.frames / max(self.seconds, 1e-9)


def _check_output(out: str, suffix: str, src: str) -> Path:
    path = Path(out).expanduser().absolute()
    if path.suffix.lower() != suffix:
        raise UserError(f"output '{out}' must end in {suffix}")
    if not path.parent.is_dir():
        raise UserError(f"cannot write '{out}': the folder '{path.parent}' does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"cannot write '{out}': the folder '{path.parent}' is not writable")
    if path.exists() and path.resolve() == Path(src).expanduser().resolve():
        raise UserError(f"output '{out}' is the input file")
    return path


def _check_input(src: str) -> Path:
    path = Path(src).expanduser()
    if not path.exists():
        raise UserError(f"'{src}' does not exist")
    if not path.is_file():
        raise UserError(f"'{src}' is not a file")
    return path


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it on success and removed on any failure."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    # disable=None: a bar on a terminal only, nothing in logs or pipes.
    return tqdm(total=total, desc=desc, unit="frame", disable=None if progress else True, leave=False)


def _read_frames(reader, num_frames: int) -> Iterator[np.ndarray]:
    from vidgen_core.video.decode import VideoError

    try:
        for _, rgb in reader.frames(((i, i) for i in range(num_frames)), size=None):
            yield np.ascontiguousarray(rgb)
    except VideoError as exc:
        raise UserError(str(exc).splitlines()[0]) from None


def compress_file(src: str, out: str, model: CodecModel, quality: int | None = None, *, progress: bool = False) -> FileResult:
    """Compress the video file ``src`` (any size PyAV reads) into the ``.vgc`` file ``out``.

    Raises:
        UserError: missing or non-video input, unwritable output, bad quality (one line).
    """
    from vidgen_core.video.decode import VideoError, VideoReader

    src_path, out_path = _check_input(src), _check_output(out, ".vgc", src)
    quality = model.prior.default_quality if quality is None else model.prior.check_quality(quality)
    start = time.perf_counter()
    try:
        reader = VideoReader(str(src_path.absolute()))
    except VideoError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    with reader, _atomic(out_path) as tmp, open(tmp, "w+b") as f, _bar(reader.info.num_frames, "compress", progress) as bar:
        result: Compressed = compress_frames(model, _read_frames(reader, reader.info.num_frames), f,
                                             fps=reader.info.fps, quality=quality, on_frames=bar.update)
    return FileResult(str(out_path), result.header, result.num_bytes, time.perf_counter() - start)


def read_vgc_header(src: str) -> Header:
    """The header of a ``.vgc`` file (one-line UserError if it is missing, foreign or damaged)."""
    with open(_check_input(src), "rb") as f:
        return open_vgc(f)


def decompress_file(
    src: str, out: str, resolve: Callable[[Header], CodecModel], *, crf: int = 12, frames_dir: str | None = None,
    progress: bool = False,
) -> FileResult:
    """Decode the ``.vgc`` file ``src`` into the MP4 ``out`` (H.264 at ``crf``; ``frames_dir``: lossless PNGs too).

    ``resolve(header)`` returns the model to decode with (the caller loads the
    one the header names, or the one the user gave, which is checked here).

    Raises:
        UserError: missing, foreign, truncated or damaged file, another model, unwritable output.
    """
    from vidgen_core.video.encode import Mp4Writer

    src_path, out_path = _check_input(src), _check_output(out, ".mp4", src)
    if not 0 <= crf <= 51:
        raise UserError(f"--crf must lie in 0..51, got {crf}")
    start = time.perf_counter()
    with open(src_path, "rb") as f:
        header = open_vgc(f)
        model = resolve(header)
        png_tmp = None
        if frames_dir is not None:
            final = Path(frames_dir).expanduser().absolute()
            if not final.parent.is_dir():
                raise UserError(f"cannot write '{frames_dir}': the folder '{final.parent}' does not exist")
            png_tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
            png_tmp.mkdir()
        try:
            with _atomic(out_path) as tmp, _bar(header.frames, "decompress", progress) as bar:
                writer = Mp4Writer(tmp, fps=float(header.fps), crf=crf, preset="medium")
                ok = False
                try:
                    i = 0
                    for frames in decompress_frames(model, header, f, on_frames=bar.update):
                        for frame in frames:
                            writer.write(frame)
                            if png_tmp is not None:
                                from vidgen_core.uses.generate import write_png

                                write_png(png_tmp / f"frame_{i:05d}.png", frame)
                            i += 1
                    ok = True
                finally:
                    writer.close(ok=ok)
            if png_tmp is not None:
                if final.exists():
                    shutil.rmtree(final)
                os.replace(png_tmp, final)
                png_tmp = None
        finally:
            if png_tmp is not None:
                shutil.rmtree(png_tmp, ignore_errors=True)
    return FileResult(str(out_path), header, src_path.stat().st_size, time.perf_counter() - start)


__all__ = ["BitstreamError", "FileResult", "compress_file", "decompress_file", "read_vgc_header"]
