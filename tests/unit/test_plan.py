"""Clip planning and split assignment, checked against hand-computed values."""

from __future__ import annotations

from collections import Counter

import pytest

from vidgen_core.config import IngestConfig
from vidgen_core.data.plan import (
    assign_split,
    clip_frame_indices,
    make_clip_id,
    min_frames,
    plan_clips,
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
