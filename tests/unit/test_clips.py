"""One video -> clips without Ray: pixels against a reference decode, fps resampling, seeking, scene cuts, memory."""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from video_corpus import index_frame, indexed, read_index, write_video

from vidgen_core.config import IngestConfig
from vidgen_core.data.clips import iter_clips
from vidgen_core.data.plan import plan_clips, sample_grid
from vidgen_core.video.decode import VideoError, VideoReader, probe, to_rgb
from vidgen_core.video.scenes import CutDetector, luma_thumbnail


def _reference(path: Path, size: int, resize: str = "short_side_crop") -> list[np.ndarray]:
    """Every frame decoded by plain PyAV, converted with the same swscale call."""
    with av.open(str(path)) as c:
        return [to_rgb(f, size, resize) for f in c.decode(video=0)]


def _clips(path: Path, cfg: IngestConfig) -> tuple[list, VideoReader]:
    with VideoReader(str(path)) as reader:
        return list(iter_clips(reader, cfg)), reader


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory) -> Path:
    """240 index-coded frames at 24 fps, a keyframe every 12 frames (so sparse plans seek)."""
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    write_video(path, indexed(240), fps=24, gop=12)
    return path


@pytest.mark.parametrize(
    "kw",
    [
        dict(clip_len=8),  # dense: sequential decode
        dict(clip_len=6, max_clips_per_video=4),  # sparse: seeks between clips
        dict(clip_len=5, clip_stride=3, frame_step=2),  # overlapping, stepped
        dict(clip_len=4, trim_start_s=2.0, trim_end_s=3.0, max_clips_per_video=3, resize="exact"),
    ],
)
def test_clip_pixels_equal_a_reference_decode(gop_video: Path, kw: dict) -> None:
    cfg = IngestConfig(size=32, **kw)
    ref = _reference(gop_video, 32, cfg.resize)
    clips, reader = _clips(gop_video, cfg)
    info = probe(str(gop_video))
    assert [c.start_frame for c in clips] == plan_clips(info.num_frames, cfg, info.fps)
    grid = sample_grid(info.num_frames, cfg, info.fps)
    for clip in clips:
        want = np.stack([ref[grid.source_index(clip.sample + k)] for k in range(cfg.clip_len)])
        np.testing.assert_array_equal(clip.frames, want)
        assert clip.frames.shape == (cfg.clip_len, 32, 32, 3)
        assert clip.start_s == pytest.approx(clip.start_frame / 24)
    if cfg.max_clips_per_video:
        assert reader.seeks > 0, "a sparse plan over a long GOP-12 video should seek"


@pytest.mark.parametrize(
    ("src_fps", "target", "n"),
    [(Fraction(2997, 100), 8.0, 120), (Fraction(30000, 1001), 8.0, 90), (12, 30.0, 24), (25, 10.0, 60)],
)
def test_fps_resampling_picks_the_right_frames(tmp_path: Path, src_fps, target: float, n: int) -> None:
    """Frames encode their own index; sampled frame k must be source frame floor(k * src / target)."""
    path = tmp_path / "indexed.mp4"
    write_video(path, indexed(n), fps=src_fps)
    cfg = IngestConfig(clip_len=4, size=32, target_fps=target)
    clips, _ = _clips(path, cfg)
    ratio = Fraction(src_fps) / Fraction(target).limit_denominator(1001)
    count = math.ceil(n / ratio)
    assert len(clips) == count // 4
    for clip in clips:
        got = [read_index(f) for f in clip.frames]
        assert got == [math.floor((clip.sample + k) * ratio) for k in range(4)]
        assert clip.start_s == pytest.approx(clip.sample / target)
    if src_fps == Fraction(2997, 100):
        assert [read_index(f) for f in clips[0].frames] == [0, 3, 7, 11]


def test_a_repeated_source_frame_is_converted_once(tmp_path: Path) -> None:
    path = tmp_path / "slow.mp4"
    write_video(path, indexed(12), fps=6)
    clips, _ = _clips(path, IngestConfig(clip_len=4, size=16, target_fps=12))
    assert [read_index(f) for f in clips[0].frames] == [0, 0, 1, 1]
    assert clips[0].frames[0] is not clips[0].frames[1]  # stacked copies, not views of one buffer


def test_scene_cuts_keep_clips_inside_scenes(tmp_path: Path) -> None:
    # Scene A: dark, a drifting grey square; scene B from frame 30: bright, a dark square.
    frames = []
    for i in range(60):
        f = np.full((48, 48, 3), 30 if i < 30 else 220, dtype=np.uint8)
        x = (i * 2) % 30
        f[10:20, x : x + 10] = 120 if i < 30 else 40
        frames.append(f)
    path = tmp_path / "cut.mp4"
    write_video(path, frames, fps=12)
    plain, _ = _clips(path, IngestConfig(clip_len=8, size=32))
    assert [c.start_frame for c in plain] == [0, 8, 16, 24, 32, 40, 48]
    cut, _ = _clips(path, IngestConfig(clip_len=8, size=32, scene_cuts=True))
    assert [c.start_frame for c in cut] == [0, 8, 16, 30, 38, 46]
    np.testing.assert_array_equal(cut[3].frames, np.stack(_reference(path, 32)[30:38]))
    capped, _ = _clips(path, IngestConfig(clip_len=8, size=32, scene_cuts=True, max_clips_per_video=3))
    assert [c.start_frame for c in capped] == [0, 16, 38]  # targets 0, 16, 32 of the cut-free plan


def test_cut_detector() -> None:
    dark = np.full((32, 32, 3), 20, dtype=np.uint8)
    moved = dark.copy()
    moved[4:10, 4:10] = 200  # a small object appearing: not a cut
    bright = np.full((32, 32, 3), 200, dtype=np.uint8)
    d = CutDetector(0.15)
    assert [d.is_cut(f) for f in (dark, moved, bright, bright)] == [False, False, True, False]
    thumb = luma_thumbnail(np.full((37, 51, 3), 255, dtype=np.uint8))
    assert thumb.shape == (16, 16) and np.allclose(thumb, 1.0)
    with pytest.raises(ValueError):
        CutDetector(0)


def test_odd_sizes_and_too_short(tmp_path: Path) -> None:
    odd = tmp_path / "odd.mp4"
    write_video(odd, [index_frame(i, 37, 51) for i in range(10)], fps=10, pix_fmt="yuv444p")
    clips, _ = _clips(odd, IngestConfig(clip_len=5, size=16))
    ref = _reference(odd, 16)
    assert len(clips) == 2
    np.testing.assert_array_equal(clips[1].frames, np.stack(ref[5:10]))
    with pytest.raises(VideoError, match="fewer than the clip_len") as err:
        _clips(odd, IngestConfig(clip_len=11, size=16))
    assert err.value.stage == "plan"


def test_memory_stays_a_window_on_a_long_video(tmp_path: Path) -> None:
    """2000 frames: the decoded video at output size is ~6 MB; ingest holds a few frames at a time."""
    path = tmp_path / "long.mp4"
    write_video(path, [index_frame(i % 256, 48, 64) for i in range(2000)], fps=25)
    cfg = IngestConfig(clip_len=8, size=32)
    decoded_bytes = 2000 * 32 * 32 * 3
    tracemalloc.start()
    try:
        n = 0
        with VideoReader(str(path)) as reader:
            for clip in iter_clips(reader, cfg):
                n += 1
                del clip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 250
    assert peak < decoded_bytes / 20, f"peak {peak} B against {decoded_bytes} B decoded"
