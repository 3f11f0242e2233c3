"""Drill: secrets in the environment of `vidgen run`, and Ray's own auth token, appear nowhere the run wrote."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from drills import SECRETS

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]


def test_no_secret_reaches_params_tags_artifacts_or_logs(tiny_run, drill) -> None:
    case = drill("secrets in the environment", "security",
                 "AWS_SECRET_ACCESS_KEY and HF_TOKEN in the shell of `vidgen run` (tiny recipe, Ray token auth on)",
                 "neither value nor Ray's auth token appears in any byte the run wrote: MLflow store (params, tags, "
                 "metrics), artifacts, checkpoints, logs, report, console")
    assert tiny_run["rc"] == 0
    secrets = dict(SECRETS)
    token = Path(os.environ["HOME"]) / ".ray" / "auth_token"
    if token.is_file() and token.read_text().strip():
        secrets["Ray auth token"] = token.read_text().strip()
    files = [p for p in Path(tiny_run["workdir"]).rglob("*") if p.is_file()]
    hits = [(name, str(p)) for p in files for name, value in secrets.items() if value.encode() in p.read_bytes()]
    console = "\n".join(line for _, line in tiny_run["lines"])
    hits += [(name, "console") for name, value in secrets.items() if value in console]
    assert hits == []
    case.figure = f"secrets found 0 ({len(secrets)} secrets x {len(files)} files and the console)"
