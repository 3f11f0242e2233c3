"""Synthetic moving-shapes videos: deterministic, real H.264, exact frame counts and rates."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import numpy as np
import pytest

from vidgen_core.config import SynthConfig
from vidgen_core.errors import UserError
from vidgen_core.video.decode import iter_frames, probe
from vidgen_core.video.synth import INDEX_NAME, generate_dataset, shape_mask

SMALL = SynthConfig(
    classes=["circle", "cross"],
    videos_per_class=2,
    width=32,
    height=24,
    fps_choices=[12.0, 15.0, 29.97],
    min_duration_s=0.5,
    max_duration_s=1.0,
    seed=3,
)


def _pixels(path: str) -> np.ndarray:
    return np.stack(list(iter_frames(path, None)))


def test_layout_and_metadata(tmp_path: Path) -> None:
    videos = generate_dataset(SMALL, tmp_path)
    assert [Path(v.path).relative_to(tmp_path).as_posix() for v in videos] == [
        "circle/circle_000.mp4",
        "circle/circle_001.mp4",
        "cross/cross_000.mp4",
        "cross/cross_001.mp4",
    ]
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    assert [v["path"] for v in index["videos"]] == [Path(v.path).relative_to(tmp_path).as_posix() for v in videos]
    for v in videos:
        assert v.label_name == Path(v.path).parent.name
        assert v.fps in SMALL.fps_choices
        assert round(0.5 * v.fps) <= v.num_frames <= round(1.0 * v.fps)


def test_files_are_h264_with_exact_count_rate_and_size(tmp_path: Path) -> None:
    for v in generate_dataset(SMALL, tmp_path):
        info = probe(v.path)
        assert info.codec == "h264"
        assert (info.width, info.height) == (SMALL.width, SMALL.height)
        assert info.fps == v.fps  # exact, also for 29.97
        assert info.num_frames == v.num_frames
        frames = _pixels(v.path)
        assert frames.shape == (v.num_frames, SMALL.height, SMALL.width, 3)
        with av.open(v.path) as c:
            assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
            assert "mp4" in c.format.name


def test_content_is_a_bright_moving_shape_on_dark(tmp_path: Path) -> None:
    v = generate_dataset(SMALL, tmp_path)[0]
    frames = _pixels(v.path).astype(int)
    bright = frames.max(axis=-1) > 100  # (T, H, W): shape pixels
    assert bright[0].mean() > 0.02  # visible
    assert (~bright[0]).mean() > 0.5  # mostly background
    assert np.median(frames[0][~bright[0]]) < 60  # dark background
    centroids = [np.argwhere(b).mean(axis=0) for b in bright]
    assert np.abs(centroids[-1] - centroids[0]).max() > 1  # it moves


def test_deterministic_from_seed(tmp_path: Path) -> None:
    a = generate_dataset(SMALL, tmp_path / "a")
    b = generate_dataset(SMALL, tmp_path / "b")
    c = generate_dataset(SMALL.model_copy(update={"seed": 4}), tmp_path / "c")
    assert [(x.num_frames, x.fps) for x in a] == [(x.num_frames, x.fps) for x in b]
    for x, y in zip(a, b):
        assert Path(x.path).read_bytes() == Path(y.path).read_bytes()  # bit-exact, not just similar
    assert any(
        x.num_frames != z.num_frames or not np.array_equal(_pixels(x.path), _pixels(z.path)) for x, z in zip(a, c)
    )


def test_idempotent_via_index(tmp_path: Path) -> None:
    first = generate_dataset(SMALL, tmp_path)
    mtimes = [Path(v.path).stat().st_mtime_ns for v in first]
    again = generate_dataset(SMALL, tmp_path)
    assert again == first
    assert [Path(v.path).stat().st_mtime_ns for v in again] == mtimes
    # A missing video or a different config means: regenerate.
    Path(first[1].path).unlink()
    assert generate_dataset(SMALL, tmp_path) == first
    assert Path(first[1].path).is_file()
    other = generate_dataset(SMALL.model_copy(update={"seed": 9}), tmp_path)
    assert json.loads((tmp_path / INDEX_NAME).read_text())["config"]["seed"] == 9
    assert len(other) == len(first)


def test_default_config_is_fast(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    videos = generate_dataset(SynthConfig(), tmp_path)
    elapsed = time.perf_counter() - t0
    assert len(videos) == 18
    assert elapsed < 10, f"default synth took {elapsed:.1f}s"


def test_odd_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="even"):
        generate_dataset(SMALL.model_copy(update={"width": 33}), tmp_path)


def test_shape_masks() -> None:
    xx = np.arange(40, dtype=np.float32)[None, :] + 0.5
    yy = np.arange(40, dtype=np.float32)[:, None] + 0.5
    circle = shape_mask("circle", 20, 20, 10, xx, yy)
    assert abs(circle.sum() - np.pi * 100) < 15
    square = shape_mask("square", 20, 20, 10, xx, yy)
    assert square.sum() == 16 * 16  # half-extent 8 -> 16 px wide
    cross = shape_mask("cross", 20, 20, 9, xx, yy)
    assert cross[20, 20] and cross[20, 12] and cross[12, 20] and not cross[12, 12]
    tri = shape_mask("triangle", 20, 20, 10, xx, yy)
    assert tri[22, 20] and not tri[12, 12] and not tri[12, 28]
    rows = tri.sum(axis=1)
    assert rows[rows > 0][0] < rows[rows > 0][-1]  # narrow at the top, wide at the bottom
    with pytest.raises(ValueError):
        shape_mask("star", 20, 20, 10, xx, yy)
