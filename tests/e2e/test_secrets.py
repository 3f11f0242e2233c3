"""Drill: secrets in the environment of `vidgen run`, and Ray's own auth token, appear nowhere the run wrote."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from drills import SECRETS

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]


def test_no_secret_reaches_params_tags_artifacts_or_logs(tiny_run, drill) -> None:
    case = drill("secrets in the environment", "security",
                 "AWS_SECRET_ACCESS_KEY and HF_TOKEN in the shell of `vidgen run` (tiny recipe, Ray token auth on)",
                 "neither value nor Ray's auth token appears in any byte the run wrote: MLflow store (params, tags, "
                 "metrics), artifacts, checkpoints, logs, report, console, and its Ray session's logs")
    assert tiny_run["rc"] == 0
    secrets = dict(SECRETS)
    token = Path(os.environ["HOME"]) / ".ray" / "auth_token"
    if token.is_file() and token.read_text().strip():
        secrets["Ray auth token"] = token.read_text().strip()
    workdir = Path(tiny_run["workdir"])
    # The run's own Ray session (its local cluster): its folder is named in the run's log file.
    logs = "".join(p.read_text(errors="replace") for p in (workdir / "logs").glob("*.log"))
    sessions = {Path(m) for m in re.findall(r"(/\S+/session_\d{4}-\d\d-\d\d_[\d_-]+)/logs", logs)}
    assert sessions and all(s.is_dir() for s in sessions), sessions
    files = [p for root in [workdir, *sessions] for p in root.rglob("*") if p.is_file()]
    hits = [(name, str(p)) for p in files for name, value in secrets.items() if value.encode() in p.read_bytes()]
    console = "\n".join(line for _, line in tiny_run["lines"])
    hits += [(name, "console") for name, value in secrets.items() if value in console]
    assert hits == []
    case.figure = f"secrets found 0 ({len(secrets)} secrets x {len(files)} files, Ray session logs included, and the console)"
