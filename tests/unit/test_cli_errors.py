"""User-caused CLI errors: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _vidgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "vidgen_core.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
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
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    workdir = tmp_path / "wd"
    proc = _vidgen(*args, "--workdir", str(workdir), cwd=tmp_path) if args[0] == "run" else _vidgen(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("vidgen: error: ") and message in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing half-written: validation happens before any output folder exists.
    if args[0] == "run" and "--force" not in args:
        assert not workdir.exists()
    assert not (tmp_path / "shards").exists()
