"""The libx264 anchor and the BD figures: sane, and measured exactly as vidgen is."""

from __future__ import annotations

import math

import pytest
from codec_fixtures import moving_square_frames

from vidgen_core.codec.rd import RDPoint, at_equal_rate, bd_figures
from vidgen_core.codec.x264 import encode_x264, split_annexb, strip_x264_sei
from vidgen_core.eval.metrics import psnr_per_clip

FRAMES = moving_square_frames(24, 33, 45, seed=3)  # odd size: yuv420p pads and crops back


def test_x264_stream_counts_without_the_version_sei_and_still_decodes() -> None:
    r = encode_x264(FRAMES, 12, 30, "medium", "yuv420p")
    assert r.frames.shape == FRAMES.shape
    # x264 writes its version + options (~0.5 kB) in one SEI; decoders ignore it, so it is not counted.
    assert 300 < r.raw_bytes - r.num_bytes < 2000
    assert r.encode_s > 0 and r.decode_s > 0


def test_sei_stripping_touches_only_that_message() -> None:
    sps, sei, idr = b"\x00\x00\x00\x01\x67abc", b"\x00\x00\x01\x06\x05x264 - core 164", b"\x00\x00\x00\x01\x65xyz"
    stream = sps + sei + idr
    assert split_annexb(stream) == [sps, sei, idr]
    assert strip_x264_sei(stream) == sps + idr


def test_rate_and_quality_follow_crf_and_444_keeps_colour() -> None:
    points = []
    for crf in (18, 30, 42):
        r = encode_x264(FRAMES, 12, crf, "veryslow", "yuv420p")
        points.append((r.num_bytes, float(psnr_per_clip(r.frames[None], FRAMES[None])[0])))
    assert points[0][0] > points[1][0] > points[2][0]
    assert points[0][1] > points[1][1] > points[2][1]
    r444 = encode_x264(FRAMES, 12, 18, "veryslow", "yuv444p")
    assert psnr_per_clip(r444.frames[None], FRAMES[None])[0] > points[0][1]  # no chroma subsampling loss


def _curve(name: str, rates: list[float], psnrs: list[float]) -> list[RDPoint]:
    return [RDPoint(name, f"p{i}", r, p, 0.5 + 0.01 * p, 1, 1, 1.0, 1.0) for i, (r, p) in enumerate(zip(rates, psnrs))]


def test_bd_rate_of_known_curves() -> None:
    anchor = _curve("x264", [0.1, 0.2, 0.4, 0.8], [30, 33, 36, 39])
    same = bd_figures(anchor, _curve("vidgen", [0.1, 0.2, 0.4, 0.8], [30, 33, 36, 39]))
    assert same["bd_rate"] == pytest.approx(0, abs=1e-6) and same["bd_metric"] == pytest.approx(0, abs=1e-6)
    half = bd_figures(anchor, _curve("vidgen", [0.05, 0.1, 0.2, 0.4], [30, 33, 36, 39]))
    assert half["bd_rate"] == pytest.approx(-50, abs=0.5)  # the same PSNR for half the bits
    # Saturated points (PSNR no longer rising) are dropped before interpolating.
    sat = bd_figures(anchor, _curve("vidgen", [0.05, 0.1, 0.2, 0.4, 0.8], [30, 33, 36, 39, 39]))
    assert sat["bd_rate"] == pytest.approx(-50, abs=0.5)
    apart = bd_figures(anchor, _curve("vidgen", [0.1, 0.2, 0.4, 0.8], [20, 21, 22, 23]))
    assert math.isnan(apart["bd_rate"]) and "no overlap" in apart["note"]
    gaps = at_equal_rate(anchor, _curve("vidgen", [0.2, 2.0], [31, 40]))
    assert gaps[0]["delta_db"] == pytest.approx(-2) and math.isnan(gaps[1]["delta_db"])


def test_fast_ssim_equals_the_project_ssim() -> None:
    from vidgen_core.codec.quality import psnr_video, ssim_video
    from vidgen_core.eval.metrics import psnr_per_clip, ssim_per_clip

    noisy = encode_x264(FRAMES, 12, 40, "medium", "yuv420p").frames
    # ssim_video runs in float64, ssim_per_clip (torchmetrics) in float32: 8e-6 apart here.
    assert ssim_video(noisy, FRAMES) == pytest.approx(float(ssim_per_clip(noisy[None], FRAMES[None])[0]), abs=5e-5)
    assert psnr_video(noisy, FRAMES) == float(psnr_per_clip(noisy[None], FRAMES[None])[0])


def test_vidgen_points_replay_latents_without_changing_a_byte() -> None:
    import io

    from codec_fixtures import tiny_codec

    from vidgen_core.codec.rd import TestVideo, vidgen_points
    from vidgen_core.codec.stream import compress_frames

    model = tiny_codec(seed=0)
    videos = [TestVideo(f"v{i}", moving_square_frames(12, 32, 32, seed=i), 12.0) for i in range(2)]
    points = vidgen_points(model, videos, [0, 4, 8])  # quality 0 encodes, 4 and 8 replay the latents
    for p, q in zip(points, (0, 4, 8)):
        direct = sum(compress_frames(model, iter(v.frames), io.BytesIO(), fps=12, quality=q).num_bytes for v in videos)
        assert p.num_bytes == direct and p.bpp == pytest.approx(8 * direct / (2 * 12 * 32 * 32))
    assert points[0].bpp < points[1].bpp < points[2].bpp
