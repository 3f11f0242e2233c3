"""compress -> .vgc file -> decompress: bit-exact, any size, the right model only, one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from codec_fixtures import moving_square_frames, save_codec_model, tiny_codec, write_video

from vidgen_core.codec.files import compress_file, decompress_file, read_vgc_header
from vidgen_core.codec.model import load_local
from vidgen_core.codec.stream import compress_frames, decompress_frames, open_vgc
from vidgen_core.errors import UserError

# Odd size, far from the 32x32 training size, and a frame count that leaves a short last window.
T, H, W = 21, 37, 45


@pytest.fixture(scope="module")
def model():
    return tiny_codec(seed=0)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """An MP4 and the frames PyAV decodes from it (what compress actually reads)."""
    from vidgen_core.video.decode import iter_frames

    path = write_video(tmp_path_factory.mktemp("codec") / "odd.mkv", moving_square_frames(T, H, W))
    return path, np.stack(list(iter_frames(str(path), None)))


def _reference(model, frames: np.ndarray, quality: int) -> np.ndarray:
    """The model's own decode of the same quantised latents, window by window (no bitstream involved)."""
    out = []
    for i in range(0, len(frames), model.window):
        win = frames[i : i + model.window]
        out.append(model.decode_window(model.symbols(win, quality), quality, len(win), H, W))
    return np.concatenate(out)


def test_file_round_trip_is_bit_exact_at_native_odd_size(model, video, tmp_path) -> None:
    path, frames = video
    out = tmp_path / "odd.vgc"
    r = compress_file(str(path), str(out), model, quality=4)
    header = read_vgc_header(str(out))
    assert (header.frames, header.height, header.width) == (T, H, W)
    assert (header.pad_h, header.pad_w) == (3, 3)  # up to the VAE's stride 4
    assert header.quality == 4 and header.model_digest == model.digest
    assert r.num_bytes == out.stat().st_size
    assert r.bpp == pytest.approx(8 * out.stat().st_size / (T * H * W))
    with open(out, "rb") as f:
        decoded = np.concatenate(list(decompress_frames(model, open_vgc(f), f)))
    assert decoded.shape == frames.shape == (T, H, W, 3)  # cropped back to 45x37, 21 frames
    assert np.array_equal(decoded, _reference(model, frames, 4))


def test_decompress_file_writes_the_video_and_lossless_frames(model, video, tmp_path) -> None:
    from vidgen_core.video.decode import probe

    path, frames = video
    vgc = tmp_path / "a.vgc"
    compress_file(str(path), str(vgc), model, quality=2)
    r = decompress_file(str(vgc), str(tmp_path / "a.mp4"), lambda h: model, frames_dir=str(tmp_path / "png"))
    info = probe(str(tmp_path / "a.mp4"))
    assert (info.num_frames, round(info.fps)) == (T, 12)
    assert (info.width, info.height) == (W + 1, H + 1)  # yuv420p needs even sizes: one edge row/column added
    assert len(list((tmp_path / "png").glob("*.png"))) == T
    assert r.header.frames == T and not list(tmp_path.glob(".*tmp"))


def test_rate_points_are_monotone_and_span_more_than_4x(model) -> None:
    frames = moving_square_frames(16, 32, 32, seed=9)
    sizes, errors = [], []
    z = np.concatenate([model.encode_window(frames[i : i + 8]) for i in (0, 8)], axis=1)
    for q in range(model.prior.num_qualities):
        buf = io.BytesIO()
        sizes.append(compress_frames(model, iter(frames), buf, fps=12, quality=q).num_bytes)
        errors.append(float(np.mean((model.prior.dequantise(model.prior.quantise(z, q), q) - z) ** 2)))
    assert len(sizes) >= 4
    assert all(a < b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert sizes[-1] / sizes[0] >= 4, sizes


def test_a_file_decodes_only_with_the_model_that_made_it(model, video, tmp_path) -> None:
    path, _ = video
    vgc = tmp_path / "b.vgc"
    compress_file(str(path), str(vgc), model, quality=1)
    other = tiny_codec(seed=1, name="vidgen-vae", version=2)
    with pytest.raises(UserError, match=r"made by models:/vidgen-vae/1 .* cannot decode it: pass -m models:/vidgen-vae/1"):
        decompress_file(str(vgc), str(tmp_path / "b.mp4"), lambda h: other)
    assert not (tmp_path / "b.mp4").exists()


def test_truncated_and_damaged_files_are_refused_and_leave_nothing(model, video, tmp_path) -> None:
    path, _ = video
    vgc = tmp_path / "c.vgc"
    compress_file(str(path), str(vgc), model, quality=3)
    data = vgc.read_bytes()
    for name, bad, message in (("cut.vgc", data[:-7], "truncated"), ("long.vgc", data + b"\0\0", "unexpected bytes"),
                               ("head.vgc", data[:30], "truncated"), ("foreign.vgc", b"\x89PNG" + data[4:], "not a vidgen")):
        (tmp_path / name).write_bytes(bad)
        with pytest.raises(UserError, match=message) as exc:
            decompress_file(str(tmp_path / name), str(tmp_path / "out.mp4"), lambda h: model)
        assert "\n" not in str(exc.value)
        assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".*tmp"))


def test_user_errors_before_any_work(model, video, tmp_path) -> None:
    path, _ = video
    (tmp_path / "notvideo.mp4").write_text("hello")
    cases = [
        (lambda: compress_file(str(tmp_path / "missing.mp4"), str(tmp_path / "x.vgc"), model), "does not exist"),
        (lambda: compress_file(str(tmp_path / "notvideo.mp4"), str(tmp_path / "x.vgc"), model), "not a readable media file"),
        (lambda: compress_file(str(path), str(tmp_path / "no" / "x.vgc"), model), "does not exist"),
        (lambda: compress_file(str(path), str(tmp_path / "x.mp4"), model), "must end in .vgc"),
        (lambda: compress_file(str(path), str(tmp_path / "x.vgc"), model, quality=99), "quality 99 is out of range"),
    ]
    for call, message in cases:
        with pytest.raises(UserError, match=message):
            call()
    assert not list(tmp_path.glob("*.vgc")) and not list(tmp_path.glob(".*tmp"))


def test_model_directory_with_codec_json_loads_as_the_same_codec(model, tmp_path) -> None:
    loaded = load_local(save_codec_model(model, tmp_path / "m"), name="vidgen-vae")
    assert loaded.prior.digest() == model.prior.digest()
    assert loaded.weights_digest == model.weights_digest and loaded.window == model.window
