"""Clip planning and split assignment, checked against hand-computed values."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import pytest

from vidgen_core.config import IngestConfig
from vidgen_core.data.plan import (
    ScenePlanner,
    assign_split,
    clip_frame_indices,
    make_clip_id,
    min_frames,
    plan_clips,
    plan_starts,
    sample_grid,
    video_id_of,
)


def cfg(**kw) -> IngestConfig:
    return IngestConfig(**kw)


@pytest.mark.parametrize(
    ("num_frames", "kw", "expected"),
    [
        (20, dict(clip_len=8), [0, 8]),  # stride defaults to clip_len; 16..19 left over
        (16, dict(clip_len=8), [0, 8]),
        (15, dict(clip_len=8), [0]),
        (8, dict(clip_len=8), [0]),
        (7, dict(clip_len=8), []),
        (0, dict(clip_len=8), []),
        (10, dict(clip_len=4, clip_stride=2), [0, 2, 4, 6]),  # overlapping clips
        # frame_step 2: sampled frames 0,2,..,18 (M=10); sampled starts 0,4 -> source 0,8
        (20, dict(clip_len=4, frame_step=2), [0, 8]),
        # 21 frames, step 2: M=ceil(21/2)=11 sampled (0..20); starts 0,4 (8 needs 12)
        (21, dict(clip_len=4, frame_step=2), [0, 8]),
        # 7 frames, step 2: sampled 0,2,4,6 -> exactly one clip of 4
        (7, dict(clip_len=4, frame_step=2), [0]),
        (6, dict(clip_len=4, frame_step=2), []),
        (20, dict(clip_len=4, clip_stride=3, frame_step=2), [0, 6, 12]),
        # 100 frames, 12 clips at 0,8,..,88; a cap of 3 keeps indices 0,4,8 -> evenly spread
        (100, dict(clip_len=8, max_clips_per_video=3), [0, 32, 64]),
        (100, dict(clip_len=8, max_clips_per_video=1), [0]),
        (20, dict(clip_len=8, max_clips_per_video=5), [0, 8]),  # cap above the count: no change
    ],
)
def test_plan_clips(num_frames: int, kw: dict, expected: list[int]) -> None:
    assert plan_clips(num_frames, cfg(**kw)) == expected


@pytest.mark.parametrize("kw", [dict(clip_len=8), dict(clip_len=5, frame_step=3, clip_stride=2), dict(clip_len=1)])
def test_planned_clips_fit_in_the_video(kw: dict) -> None:
    c = cfg(**kw)
    for n in range(0, 60):
        starts = plan_clips(n, c)
        assert starts == sorted(set(starts))
        for s in starts:
            frames = clip_frame_indices(s, c)
            assert len(frames) == c.clip_len and frames[-1] < n
        assert bool(starts) == (n >= min_frames(c))


def test_clip_frame_indices() -> None:
    assert clip_frame_indices(8, cfg(clip_len=4, frame_step=2)) == [8, 10, 12, 14]
    assert min_frames(cfg(clip_len=4, frame_step=2)) == 7


def test_assign_split_is_deterministic_and_proportional() -> None:
    ids = [video_id_of(f"class_{i % 7}/video_{i:05d}.mp4") for i in range(2000)]
    first = [assign_split(v, 0.15, 0.15) for v in ids]
    assert first == [assign_split(v, 0.15, 0.15) for v in ids]
    counts = Counter(first)
    # Binomial sd for p=0.15, n=2000 is ~16; allow ~4 sd.
    assert abs(counts["val"] - 300) < 65 and abs(counts["test"] - 300) < 65
    assert counts["train"] + counts["val"] + counts["test"] == 2000


def test_assign_split_edges() -> None:
    assert {assign_split(str(i), 0.0, 0.0) for i in range(200)} == {"train"}
    # Growing test_fraction only moves videos into test (ids keep their place on [0, 1)).
    small = [assign_split(str(i), 0.0, 0.1) for i in range(500)]
    large = [assign_split(str(i), 0.0, 0.3) for i in range(500)]
    assert all(b == "test" for a, b in zip(small, large) if a == "test")
    with pytest.raises(ValueError):
        assign_split("x", 0.6, 0.5)


def test_ids() -> None:
    vid = video_id_of("circle/circle_000.mp4")
    assert len(vid) == 16 and vid == video_id_of("circle/circle_000.mp4")
    assert vid != video_id_of("circle/circle_001.mp4")
    c = cfg(clip_len=8)
    cid = make_clip_id("/data/a.mp4", 8, c)
    assert cid == make_clip_id("/data/a.mp4", 8, c) and len(cid) == 16
    assert cid != make_clip_id("/data/a.mp4", 16, c)
    assert cid != make_clip_id("/data/b.mp4", 8, c)
    assert cid != make_clip_id("/data/a.mp4", 8, cfg(clip_len=8, size=64))
    assert cid == make_clip_id("/data/a.mp4", 8, cfg(clip_len=8, val_fraction=0.2))  # split settings don't shape clips


# ---------------------------------------------------------------- resampling, trimming, scenes


def test_target_fps_grid_from_29_97_to_8() -> None:
    c = cfg(clip_len=4, target_fps=8)
    grid = sample_grid(300, c, fps=29.97)
    assert grid.ratio == Fraction(2997, 800) and grid.fps == 8.0
    # Sampled frame k is the source frame on screen at k/8 s: floor(k * 29.97 / 8).
    assert [grid.source_index(k) for k in range(8)] == [0, 3, 7, 11, 14, 18, 22, 26]
    assert grid.count == math.ceil(300 * 800 / 2997)  # 81: the last one is source frame 299
    assert grid.source_index(grid.count - 1) == 299 and grid.source_index(grid.count) >= 300
    assert plan_clips(300, c, fps=29.97) == [grid.source_index(s) for s in range(0, 77, 4)]
    with pytest.raises(ValueError, match="fps"):
        plan_clips(300, c)


def test_target_fps_exact_for_ntsc_and_upsampling() -> None:
    ntsc = sample_grid(100, cfg(target_fps=10), fps=30000 / 1001)
    assert ntsc.ratio == Fraction(3000, 1001)
    up = sample_grid(6, cfg(target_fps=30), fps=12)
    assert [up.source_index(k) for k in range(up.count)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5]


def test_source_index_is_the_exact_floor_for_every_rate() -> None:
    # source_index works in integers; it must agree with floor(k * ratio) taken on the Fraction.
    for fps in (12, 23.976, 24, 25, 29.97, 30000 / 1001, 50, 59.94, 60):
        for target in (None, 5, 8, 10, 12.5, 24, 30):
            c = cfg(target_fps=target, trim_start_s=0.3) if target else cfg(frame_step=3, trim_start_s=0.3)
            grid = sample_grid(600, c, fps=fps)
            assert [grid.source_index(k) for k in range(grid.count + 2)] == [
                grid.first + math.floor(k * grid.ratio) for k in range(grid.count + 2)
            ], (fps, target)


def test_trimming() -> None:
    c = cfg(clip_len=10, trim_start_s=1.0, trim_end_s=2.0)
    grid = sample_grid(100, c, fps=10)  # frames 10..79 remain
    assert (grid.first, grid.count, grid.start_s) == (10, 70, 1.0)
    assert plan_clips(100, c, fps=10) == [10, 20, 30, 40, 50, 60, 70]
    assert sample_grid(100, cfg(trim_start_s=0.1), fps=10).first == 1  # 0.1 s is exactly one frame
    assert plan_clips(25, c, fps=10) == []  # trimmed away


def test_config_rejects_target_fps_with_frame_step() -> None:
    with pytest.raises(ValueError, match="exclusive"):
        cfg(frame_step=2, target_fps=8)


@pytest.mark.parametrize(
    "kw", [dict(clip_len=4), dict(clip_len=4, clip_stride=3), dict(clip_len=3, max_clips_per_video=4)]
)
def test_scene_planner_without_cuts_equals_the_plan(kw: dict) -> None:
    c = cfg(**kw)
    for count in range(0, 40):
        planner = ScenePlanner(count, c)
        got = [s for j in range(count) if (s := planner.ends_at(j)) is not None]
        assert got == plan_starts(count, c), count


def test_scene_planner_restarts_the_grid_at_each_cut() -> None:
    planner = ScenePlanner(30, cfg(clip_len=4))
    got = []
    for j in range(30):
        if j in (10, 13):
            planner.cut(j)
        if (s := planner.ends_at(j)) is not None:
            got.append(s)
    assert got == [0, 4, 13, 17, 21, 25]  # 8..11 spans the cut at 10; 10..12 is too short a scene


def test_clip_ids_change_with_sampling() -> None:
    base = make_clip_id("/a.mp4", 8, cfg(clip_len=8))
    assert make_clip_id("/a.mp4", 8, cfg(clip_len=8, target_fps=8), sample=2) != base
    assert make_clip_id("/a.mp4", 8, cfg(clip_len=8, target_fps=8), sample=2) != make_clip_id(
        "/a.mp4", 8, cfg(clip_len=8, target_fps=8), sample=3
    )
    assert make_clip_id("/a.mp4", 8, cfg(clip_len=8, resize="exact")) != base
