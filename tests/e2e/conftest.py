"""One lean run of the tiny workflow per test session, shared by the e2e tests that look at its results.

It runs as a user starts it (`vidgen run` as a subprocess, its own local Ray,
none of the test session's Ray or MLflow settings), sized to finish quickly on
2 CPU cores: the tests that use it check the console, the log file, the MLflow
UI and the report, not the models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from plumbing import PLUMBING, as_cli_args

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"
# Short training with frequent progress reports (test_console_run matches "step N/40"), few videos, a short judge.
LEAN = [
    "--set", "synth.videos_per_class=3", *as_cli_args(PLUMBING),
    "--set", "train_vae.steps=40", "--set", "train_vae.checkpoint_every=20", "--set", "train_vae.log_every=5",
    "--set", "train_gan.steps=10", "--set", "train_gan.checkpoint_every=10", "--set", "train_gan.log_every=5",
    "--set", "train_gan.batch_size=8",  # 3 videos a class leave fewer than 16 training clips
]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """``{"rc", "lines": [(monotonic time, console line)], "workdir", "seconds"}`` of the finished run."""
    workdir = tmp_path_factory.mktemp("tiny-run-wd")
    # As a user starts it: RAY_AUTH_MODE unset too, so Ray turns token auth on for its local
    # cluster (the token goes to the tests' temporary HOME) exactly as on a user's machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_DATA_", "MLFLOW_")) and k != "RAY_AUTH_MODE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidgen_core.cli", "run", "--config", str(RECIPE), "--workdir", str(workdir), *LEAN],
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
    return {"rc": rc, "lines": lines, "workdir": workdir, "seconds": time.monotonic() - t0}
