"""One run of the tiny workflow per test session, shared by the e2e tests that look at its results.

It runs as a user starts it (`vidgen run` on ``workflows/configs/tiny.yaml`` as a
subprocess, its own local Ray, none of the test session's Ray or MLflow
settings). The tests that use it check the console, the log file, the MLflow
UI, the report (test_console_run, test_ui_browser) and the models and the
registry (test_pipeline, which loads the finished run's results by running
the same pipeline again in-process: every step is then reused).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from drills import SECRETS

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """``{"rc", "lines": [(monotonic time, console line)], "workdir", "seconds"}`` of the finished run."""
    workdir = tmp_path_factory.mktemp("tiny-run-wd")
    # As a user starts it: RAY_AUTH_MODE unset too, so Ray turns token auth on for its local
    # cluster (the token goes to the tests' temporary HOME) exactly as on a user's machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_DATA_", "MLFLOW_")) and k != "RAY_AUTH_MODE"}
    # Secrets a user's shell may hold: the reliability drill test_secrets.py looks for them in everything
    # the run wrote (vidgen never reads these two; they must not be copied anywhere either).
    env.update(SECRETS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflows.cli", "run", "--config", str(RECIPE), "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    t0 = time.monotonic()
    reader.start()
    try:
        rc = proc.wait(timeout=840)
    finally:
        if proc.poll() is None:
            from procs import stop_session

            stop_session(proc)
    reader.join(timeout=10)
    # What the user saw, kept beside the work dir for a person checking a CI run afterwards.
    (workdir.parent / "tiny-run-console.txt").write_text("".join(f"{line}\n" for _, line in lines))
    return {"rc": rc, "lines": lines, "workdir": workdir, "seconds": time.monotonic() - t0}
