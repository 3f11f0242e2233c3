"""Drill: user-caused CLI and config errors: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

DRILL = ("bad config and CLI input", "bad input",
         "13 mistakes: unknown key, bad value, missing config file, missing data source, unknown step (--force, "
         "--from), missing ingest source, unreachable tracking server (run, models, status), nothing run yet, no store",
         "exit code 2, one `vidgen: error:` line naming the mistake, no traceback, no file written but the log")


def _files(root: Path) -> set[str]:
    """What exists under ``root``, less the log file a refused `vidgen run` leaves (``wd/logs/*.log``:
    where its details go) and the folders that hold it."""
    found = {str(p.relative_to(root)) for p in root.rglob("*")}
    logs = {f for f in found if f.startswith("wd/logs/") and f.endswith(".log")}
    return found - logs - ({"wd", "wd/logs"} if logs else set())


def _vidgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--set", "train_vae.stepz=1"], "unknown config key 'train_vae.stepz'"),
        (["run", "--set", "train_vae.steps=zero"], "bad config value for 'train_vae.steps'"),
        (["run", "--config", "nope.yaml"], "cannot read config file 'nope.yaml'"),
        (["run", "--set", "data.source=/no/such/videos"], "data.source '/no/such/videos' does not exist"),
        (["run", "--force", "train_nothing", "--set", "data.source=."], "unknown step 'train_nothing'"),
        (["ingest", "/no/such/dir", "--out", "shards"], "source '/no/such/dir' does not exist"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str, drill) -> None:
    case = drill(*DRILL)
    workdir = tmp_path / "wd"
    proc = _vidgen(*args, "--workdir", str(workdir), cwd=tmp_path) if args[0] == "run" else _vidgen(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("vidgen: error: ") and message in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing half-written: validation happens before any output folder exists.
    assert _files(tmp_path) == set(), _files(tmp_path)
    case.figure = "files written 0"


def test_an_unreachable_tracking_server_is_one_line(tmp_path: Path, drill) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    for args in (["run", "--set", "data.source=."], ["models", "list"], ["status"]):
        case = drill(*DRILL)
        proc = subprocess.run([sys.executable, "-m", "workflows.cli", *args, "--workdir", str(tmp_path / "wd")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
        assert last.startswith(f"vidgen: error: cannot reach the MLflow tracking server at 'http://127.0.0.1:{port}'"), last
        assert "Traceback" not in proc.stderr
        assert _files(tmp_path) == set(), _files(tmp_path)
        case.figure = "files written 0"


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--from", "nope", "--set", "data.source=."], "unknown step 'nope' for --from"),
        (["status"], "nothing has run in work dir"),
        (["models", "list"], "no MLflow store at"),
        (["models", "show", "vidgen-vae"], "no MLflow store at"),
    ],
)
def test_more_user_errors(tmp_path: Path, args: list[str], message: str, drill) -> None:
    case = drill(*DRILL)
    proc = _vidgen(*args, "--workdir", str(tmp_path / "wd"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("vidgen: error: ") and message in last, proc.stderr
    assert _files(tmp_path) == set(), _files(tmp_path)
    case.figure = "files written 0"
