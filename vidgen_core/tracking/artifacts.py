"""Small helpers that log to an explicit MLflow run (never the fluent active run)."""

from __future__ import annotations

import json
import numbers
import os
import re
import tempfile
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient


def log_json(client: MlflowClient, run_id: str, obj: Any, artifact_path: str) -> None:
    """Write ``obj`` as indented JSON to the run's artifact ``artifact_path``.

    Args:
        client: MLflow client bound to the right tracking URI.
        run_id: run that receives the artifact.
        obj: JSON-able object (non-JSON values are written with ``str``).
        artifact_path: file path inside the run's artifacts, e.g.
            ``"eval_report.json"`` or ``"reports/eval.json"``.
    """
    artifact_path = artifact_path.strip("/")
    if not artifact_path:
        raise ValueError("artifact_path must name a file, e.g. 'eval_report.json'")
    folder, filename = os.path.split(artifact_path)
    with tempfile.TemporaryDirectory(prefix="vidgen-artifact-") as tmp:
        local = os.path.join(tmp, filename)
        with open(local, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        client.log_artifact(run_id, local, artifact_path=folder or None)


def metric_key(name: str) -> str:
    """``name`` as a valid MLflow metric key: characters MLflow refuses (anything but letters, digits,
    ``_ - . / : `` and space) become ``_``, e.g. a class name ``"car (red)"`` -> ``"car _red_"``."""
    return re.sub(r"[^A-Za-z0-9_\-./: ]", "_", name) or "_"


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, Any], step: int = 0
) -> None:
    """Log numeric metrics in one batch call; non-numeric values are skipped.

    Numpy scalars count as numbers; bools are skipped (``True`` would silently
    become 1.0).
    """
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(key=str(k), value=float(v), timestamp=now, step=step)
        for k, v in metrics.items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool)
    ]
    if batch:
        client.log_batch(run_id, metrics=batch)
