"""The progress board's arithmetic, and reporters that never get in the work's way."""

from __future__ import annotations

from vidgen_core.progress import Board, Reporter


def test_values_are_replaced_and_counters_summed_across_reporters() -> None:
    board = Board()
    board.update("run1", {"kind": "ingest", "files_total": 10}, {})
    board.update("run1", {}, {"files": 1, "frames": 80})  # two read tasks, each reporting its own files
    board.update("run1", {}, {"files": 2, "frames": 100})
    board.update("run2", {"kind": "train", "step": 5}, {})
    board.update("run2", {"step": 10, "loss": 0.5}, {})
    snap = board.snapshot()
    assert {k: v for k, v in snap["run1"].items() if k != "t"} == {"kind": "ingest", "files_total": 10, "files": 3, "frames": 180}
    assert snap["run2"]["step"] == 10 and snap["run2"]["loss"] == 0.5


def test_a_reporter_without_a_board_does_nothing_and_raises_nothing() -> None:
    for key in (None, "run-without-ray"):
        reporter = Reporter(key, interval_s=0.0)
        reporter.set(step=1)
        reporter.add(files=1)
        reporter.flush()
