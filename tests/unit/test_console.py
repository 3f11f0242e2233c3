"""The console's rules, one by one: what it shows, how progress reads, how a crash reads."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from workflows.console import ConsoleFilter, RunLog, _worker_line_level, adopt_loggers
from workflows.progress_view import ProgressView, progress_line


def _record(name: str, level: int, msg: str = "m", **extra) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_the_console_shows_the_story_own_warnings_and_anyone_s_errors() -> None:
    quiet, loud = ConsoleFilter(verbose=False), ConsoleFilter(verbose=True)
    assert quiet.filter(_record("vidgen", logging.INFO))
    assert quiet.filter(_record("workflows.executor", logging.WARNING))
    assert not quiet.filter(_record("workflows.executor", logging.INFO))
    assert not quiet.filter(_record("ray.train", logging.WARNING))
    assert not quiet.filter(_record("mlflow.store.db.utils", logging.INFO))
    assert quiet.filter(_record("ray_worker_output", logging.ERROR))  # real errors are never muted
    assert not quiet.filter(_record("vidgen", logging.ERROR, file_only=True))  # already said in one line
    assert loud.filter(_record("ray.train", logging.INFO)) and loud.filter(_record("ray_worker_output", logging.INFO))


def test_worker_lines_get_the_level_their_prefix_names() -> None:
    assert _worker_line_level("2026-12-01 10:00:00,000\tWARNING worker.py:1 -- slow") == logging.WARNING
    assert _worker_line_level("2026-12-01 10:00:00,000\tERROR worker.py:1 -- died") == logging.ERROR
    assert _worker_line_level("Starting execution of Dataset train_0") == logging.INFO


def test_third_party_console_handlers_give_way_to_the_root_handlers() -> None:
    noisy = logging.getLogger("some_library_under_test")
    noisy.addHandler(logging.StreamHandler())
    noisy.addHandler(logging.FileHandler("/dev/null"))
    noisy.propagate = False
    adopt_loggers()
    assert noisy.propagate and [type(h) for h in noisy.handlers] == [logging.FileHandler]


def test_progress_lines_say_step_loss_speed_and_eta() -> None:
    train = {"kind": "train", "step": 30, "total": 120, "loss": 0.01234, "clips_per_s": 41.5, "step_time_s": 0.5}
    assert progress_line("train_vae", train, 20.0) == (
        "[vidgen] train_vae  step 30/120 (25%) · loss 0.01234 · 41.5 clips/s · ETA 45s"
    )
    ingest = {"kind": "ingest", "files": 3, "files_total": 12, "clips": 40, "frames": 320}
    assert progress_line("ingest", ingest, 4.0) == "[vidgen] ingest     files 3/12 · 40 clips · 80 frames/s"
    assert progress_line("ingest", {"kind": "ingest", "files_total": 12}, 1.0) is None  # nothing done yet


def test_progress_lines_are_throttled_off_a_terminal() -> None:
    lines: list[str] = []
    log = logging.getLogger("test_progress_view")
    log.addHandler(_ListHandler(lines))
    log.propagate = False
    log.setLevel(logging.INFO)
    view = ProgressView(log, io.StringIO(), line_every_s=3600)
    running = {"run1": ("train_vae", 0.0)}
    for step in (10, 20, 30):
        view.update(running, {"run1": {"kind": "train", "step": step, "total": 100, "loss": 1.0, "clips_per_s": 1.0}})
    assert len(lines) == 1 and "step 10/100" in lines[0]  # the first at once, then one per interval


class _ListHandler(logging.Handler):
    def __init__(self, out: list[str]) -> None:
        super().__init__()
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(record.getMessage())


def test_a_crashing_step_is_one_line_and_the_traceback_is_in_the_log_file(tmp_path: Path, monkeypatch) -> None:
    import workflows.executor as executor
    from workflows.cli import main

    def crash(*args, **kwargs):
        raise executor.StepFailed(
            "step train_vae failed: ValueError: latent too small", "train_vae",
            'Traceback (most recent call last):\n  File "fit_vae.py", line 12, in fit_vae\nValueError: latent too small',
        )

    monkeypatch.setattr(executor, "run_pipeline", crash)
    result = CliRunner().invoke(main, ["run", "--set", "data.source=.", "--workdir", str(tmp_path / "wd")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    [log] = list((tmp_path / "wd" / "logs").glob("*.log"))
    assert lines == [f"vidgen: error: step train_vae failed: ValueError: latent too small (full traceback in {log})"]
    text = log.read_text()
    assert 'File "fit_vae.py", line 12, in fit_vae' in text and "latent too small" in text


def test_a_bug_in_vidgen_itself_is_one_line_too(tmp_path: Path, monkeypatch) -> None:
    import workflows.executor as executor
    from workflows.cli import main

    def bug(*args, **kwargs):
        raise KeyError("steps")

    monkeypatch.setattr(executor, "run_pipeline", bug)
    result = CliRunner().invoke(main, ["run", "--set", "data.source=.", "--workdir", str(tmp_path / "wd")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidgen: error: vidgen crashed: KeyError: 'steps' (full traceback in ")
    [log] = list((tmp_path / "wd" / "logs").glob("*.log"))
    assert "Traceback (most recent call last)" in log.read_text()


@pytest.fixture(autouse=True)
def _restore_logging():
    """RunLog changes the root logger; leave it as found for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_run_log_is_renamed_after_the_pipeline_run(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, stream=io.StringIO())
    try:
        logging.getLogger("vidgen").info("before")
        path = run_log.name_after("abc123")
        logging.getLogger("vidgen").info("after")
    finally:
        run_log.close()
    assert path == tmp_path / "logs" / "abc123.log"
    text = path.read_text()
    assert "before" in text and "after" in text
