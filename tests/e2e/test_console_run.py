"""What a user sees: `vidgen run` on the tiny recipe, as a subprocess, without -v (``tiny_run``, conftest.py).

The console tells vidgen's story only (steps, progress, summary) in at most 40
lines; Ray's, MLflow's and other libraries' warnings stay out of it because
their causes are fixed or they go to the log file, which keeps everything and
is logged to the pipeline's MLflow run.
"""

from __future__ import annotations

import re

import pytest

PROGRESS = re.compile(r"^\[vidgen\] train_vae\s+step \d+/1000 \(\d+%\) · loss \S+ · [\d.]+ clips/s · ETA \S+$")
# What a third-party line on the console would look like: a logging level, Ray's worker prefix, a traceback.
FOREIGN = re.compile(r"\b(WARNING|WARN|ERROR|CRITICAL)\b|Warning:|\(\S+ pid=\d+|Traceback|tqdm is not installed")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _text(run: dict) -> list[str]:
    return [line for _, line in run["lines"] if line.strip()]


def test_the_console_is_short_and_vidgen_s_own(tiny_run) -> None:
    lines = _text(tiny_run)
    print(f"{len(lines)} console lines in {tiny_run['seconds']:.0f}s:", *lines, sep="\n")
    assert tiny_run["rc"] == 0, "\n".join(lines[-20:])
    assert len(lines) <= 40
    foreign = [line for line in lines if FOREIGN.search(line)]
    assert not foreign, foreign
    assert lines[0].startswith("[vidgen] pipeline run ")
    for step in ("synth", "ingest", "train_vae", "train_gan", "evaluate", "register"):
        assert any(re.match(rf"^\[vidgen\] {step}\s+started run ", line) for line in lines), step
        assert any(re.match(rf"^\[vidgen\] {step}\s+finished in ", line) for line in lines), step


def test_progress_is_shown_while_training(tiny_run) -> None:
    stamped = [(t, line) for t, line in tiny_run["lines"]]
    started = next(t for t, line in stamped if re.match(r"^\[vidgen\] train_vae\s+started", line))
    finished = next(t for t, line in stamped if re.match(r"^\[vidgen\] train_vae\s+finished", line))
    progress = [(t, line) for t, line in stamped if PROGRESS.match(line)]
    assert progress, [line for _, line in stamped]
    assert all(started <= t <= finished for t, _ in progress)  # live, not a summary afterwards


def test_the_log_file_holds_everything_and_is_in_mlflow(tiny_run) -> None:
    from mlflow import MlflowClient

    workdir = tiny_run["workdir"]
    pid = _text(tiny_run)[0].split()[3]
    log = workdir / "logs" / f"{pid}.log"
    text = log.read_text()
    assert len(text.splitlines()) > len(_text(tiny_run))
    for line in _text(tiny_run)[:5]:  # the story is in the file too
        assert line in text
    assert "ray_worker_output: (" in text  # Ray's worker output, kept here rather than on the console
    assert "State API may be temporarily unavailable" not in text  # the dashboard is up: the cause is gone
    assert "tqdm is not installed" not in text
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    assert [a.path for a in client.list_artifacts(pid, "logs")] == [f"logs/{pid}.log"]
    experiment = client.get_experiment(client.get_run(pid).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
