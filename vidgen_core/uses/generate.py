"""`vidgen generate`: sample a registered GAN into one grid video (and optional PNG frames).

The samples come from the registered pyfunc's ``predict`` (generator -> frozen
VAE decoder), so they are exactly what any MLflow user of the model gets.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidgen_core.errors import UserError
from vidgen_core.uses.loading import LoadedModel, load_for_use


def resolve_label(model: LoadedModel, label: str | None) -> int | None:
    """``--label`` (a class name or index) -> class index; None when not given.

    Raises:
        UserError: the model is unconditional, or does not know the label.
    """
    if label is None:
        return None
    generator = model.python_model.generator
    if not generator.conditional:
        raise UserError(f"{model.uri} is unconditional: it cannot generate a given class; drop --label")
    names = [str(n) for n in model.extra.get("label_names") or []]
    if label in names:
        return names.index(label)
    if label.lstrip("-").isdigit() and 0 <= int(label) < generator.num_classes:
        return int(label)
    known = ", ".join(f"{i}={n}" for i, n in enumerate(names)) or f"0..{generator.num_classes - 1}"
    raise UserError(f"unknown label '{label}' for {model.uri}; it knows {known}")


def sample_labels(model: LoadedModel, n: int, label: int | None) -> np.ndarray:
    """``(n,)`` class ids: all ``label``, or the classes in turn (a conditional model), or -1 (unconditional)."""
    generator = model.python_model.generator
    if label is not None:
        return np.full(n, label, dtype=np.int64)
    if generator.conditional:
        return np.arange(n, dtype=np.int64) % generator.num_classes
    return np.full(n, -1, dtype=np.int64)


def grid(videos: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 videos ``(N, T, H, W, 3)`` into one ``(T, rows*(H+pad)-pad, cols*(W+pad)-pad, 3)``.

    Rows fill left to right; unused cells and the ``pad``-pixel gaps stay black.
    Both output sides are rounded up to even (H.264 4:2:0 needs them).
    """
    n, t, h, w, c = videos.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out_h, out_w = rows * (h + pad) - pad, cols * (w + pad) - pad
    out = np.zeros((t, out_h + out_h % 2, out_w + out_w % 2, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        out[:, r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = videos[i]
    return out


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 ``(H, W, 3)`` RGB image as a lossless PNG (zlib only; no imaging library needed)."""
    h, w, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))  # filter type 0 per scanline

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


@dataclass(frozen=True)
class Generated:
    out: str
    num_samples: int
    labels: list[int]
    frames_dir: str | None


def generate(
    model_uri: str, n: int, out: str, *, label: str | None = None, seed: int = 0, fps: float = 8.0,
    frames_dir: str | None = None, tracking_uri: str | None = None,
) -> Generated:
    """Sample ``n`` videos from a registered GAN and write them as one grid MP4 (+ PNG frames).

    Raises:
        UserError: unknown URI, a non-GAN model, a label the model does not know or
            an unconditional model given one, a bad ``n`` or output path.
    """
    if n < 1:
        raise UserError(f"-n must be >= 1, got {n}")
    out_path = Path(out).expanduser().absolute()
    if not out_path.parent.is_dir():
        raise UserError(f"the folder of output '{out}' does not exist")
    if out_path.suffix.lower() != ".mp4":
        raise UserError(f"output '{out}' must end in .mp4")
    model = load_for_use(model_uri, "gan", "generate", tracking_uri=tracking_uri)
    labels = sample_labels(model, n, resolve_label(model, label))
    import pandas as pd

    videos = model.pyfunc.predict(pd.DataFrame({"label": labels}), params={"seed": int(seed)})
    tiled = grid(np.asarray(videos))
    from vidgen_core.video.encode import write_mp4

    write_mp4(tiled, out_path, fps=fps)  # temp file + rename inside
    if frames_dir is not None:
        # Frames go to a sibling temp folder renamed at the end: never a half-written folder.
        final = Path(frames_dir).expanduser().absolute()
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.mkdir(parents=True)
        try:
            for i, frame in enumerate(tiled):
                write_png(tmp / f"frame_{i:04d}.png", frame)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Generated(str(out_path), n, labels.tolist(), str(frames_dir) if frames_dir else None)
