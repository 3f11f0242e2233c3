"""A Ray Train checkpoint record cut short by a kill must not stop the next run from resuming."""

from __future__ import annotations

import json

import pytest

from vidgen_core.train.ray_driver import RAY_SNAPSHOT, discard_unreadable_snapshot


@pytest.mark.parametrize("content", [b"", b'{"checkpoint_results": [{"met', b"\xff\xfe"])
def test_an_empty_or_cut_snapshot_is_moved_aside_with_a_warning(tmp_path, content: bytes) -> None:
    (tmp_path / RAY_SNAPSHOT).write_bytes(content)
    (tmp_path / "checkpoint_00000020").mkdir()  # what the workers resume from: left alone
    with pytest.warns(UserWarning, match="unreadable"):
        aside = discard_unreadable_snapshot(str(tmp_path))
    assert aside is not None and not (tmp_path / RAY_SNAPSHOT).exists()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(RAY_SNAPSHOT + ".unreadable-")]
    assert len(kept) == 1 and kept[0].read_bytes() == content  # kept for a post-mortem, not deleted
    assert (tmp_path / "checkpoint_00000020").is_dir()


def test_a_readable_or_missing_snapshot_is_left_as_it_is(tmp_path, recwarn) -> None:
    assert discard_unreadable_snapshot(str(tmp_path / "no-run-yet")) is None
    good = json.dumps({"ray_version": "x", "checkpoint_results": []}).encode()
    (tmp_path / RAY_SNAPSHOT).write_bytes(good)
    assert discard_unreadable_snapshot(str(tmp_path)) is None
    assert (tmp_path / RAY_SNAPSHOT).read_bytes() == good and not recwarn.list
