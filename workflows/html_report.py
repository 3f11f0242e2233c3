"""One self-contained HTML page per pipeline run: what ran, the numbers, the curves, the pictures.

Generic over whatever the steps logged: a table per step of its latest
metrics, a plot (matplotlib) of every metric with a history (loss curves,
quality over training), and every PNG artifact under ``previews/`` and
``plots/`` of the step runs, embedded as base64 so the file opens anywhere,
offline, and can be mailed. Reused steps show the run they reused.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from workflows import run_store as rs
from workflows.dag import STEP_NAMES

IMAGE_DIRS = ("previews", "plots")
MAX_CURVES_PER_STEP = 16
REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#777}.warn{color:#a40}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figure img{min-height:256px;max-width:100%;image-rendering:pixelated}
figure.plot img{image-rendering:auto;min-height:0}figcaption{font-size:.85em;color:#555}
"""


def _fmt(value: float) -> str:
    if value != value or math.isinf(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def _step_runs(client: Any, pipeline_run: Any) -> list[tuple[str, str, Any]]:
    """``(step, "ran"|"reused", run)`` for each step the pipeline run recorded, in DAG order."""
    out = []
    for step in STEP_NAMES:
        how = pipeline_run.data.tags.get(rs.pipeline_step_tag(step), "")
        if how:
            verb, run_id = how.split(" ", 1)
            out.append((step, verb, client.get_run(run_id)))
    return out


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _curves(client: Any, run: Any, step: str) -> str | None:
    """A grid of small plots, one per metric with more than one logged value; base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    import matplotlib.pyplot as plt

    histories = {}
    for key in sorted(run.data.metrics, key=lambda k: (not k.startswith("loss"), k)):  # losses first
        points = client.get_metric_history(run.info.run_id, key)
        if len(points) > 1:
            histories[key] = sorted((p.step, p.value) for p in points)
        if len(histories) >= MAX_CURVES_PER_STEP:
            break
    if not histories:
        return None
    cols = min(4, len(histories))
    rows = -(-len(histories) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.4 * rows), squeeze=False)
    for ax, (key, points) in zip(axes.flat, histories.items()):
        ax.plot([s for s, _ in points], [v for _, v in points], lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        if key.startswith("loss") and all(v > 0 for _, v in points):
            ax.set_yscale("log")  # losses span decades; a linear axis hides the late progress
    for ax in list(axes.flat)[len(histories):]:
        ax.axis("off")
    fig.suptitle(f"{step}: metrics over training steps", fontsize=10)
    fig.tight_layout()
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _images(client: Any, run_id: str, tmp: str) -> list[tuple[str, str]]:
    """``(artifact path, base64 PNG)`` of every PNG under the run's IMAGE_DIRS, sorted by path."""
    found = []

    def walk(path: str) -> None:
        for info in client.list_artifacts(run_id, path):
            if info.is_dir:
                walk(info.path)
            elif info.path.lower().endswith(".png"):
                local = client.download_artifacts(run_id, info.path, tmp)
                found.append((info.path, base64.b64encode(Path(local).read_bytes()).decode()))

    for top in IMAGE_DIRS:
        try:
            walk(top)
        except Exception:  # noqa: BLE001 - no such folder in this run
            continue
    return sorted(found)


def _metrics_table(metrics: dict[str, float]) -> str:
    if not metrics:
        return '<p class="muted">no metrics</p>'
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td class=n>{_fmt(v)}</td></tr>" for k, v in sorted(metrics.items()))
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _duration(run: Any) -> str:
    start, end = run.info.start_time, run.info.end_time
    return f"{(end - start) / 1000:.1f}s" if start and end else "-"


def build_report(client: Any, pipeline_run_id: str) -> str:
    """The HTML text of the report of one pipeline run (see the module docstring)."""
    parent = client.get_run(pipeline_run_id)
    steps = _step_runs(client, parent)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(parent.info.start_time / 1000))
    out = [
        "<!doctype html><html><head><meta charset=utf-8>",
        f"<title>vidgen · {html.escape(parent.info.run_name or pipeline_run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>vidgen pipeline run {html.escape(parent.info.run_name or '')}</h1>",
        f'<p>run <code>{pipeline_run_id}</code> · {parent.info.status} · started {started} · '
        f"{_duration(parent)}</p>",
        "<h2>Steps</h2><table><tr><th>step</th><th></th><th>run</th><th>status</th><th>duration</th></tr>",
    ]
    for step, verb, run in steps:
        out.append(f"<tr><td>{step}</td><td>{verb}</td><td><code>{run.info.run_id}</code></td>"
                   f"<td>{run.info.status}</td><td class=n>{_duration(run)}</td></tr>")
    out.append("</table>")
    with tempfile.TemporaryDirectory() as tmp:
        for step, verb, run in steps:
            out.append(f"<h2>{step}</h2>")
            if verb == "reused":
                out.append(f'<p class="muted">reused from run {run.info.run_id}</p>')
            for key, text in sorted(run.data.tags.items()):  # e.g. vidgen.judge_warning: a weak yardstick
                if key.startswith("vidgen.") and key.endswith("_warning"):
                    out.append(f'<p class="warn">warning: {html.escape(text)}</p>')
            out.append(_metrics_table(run.data.metrics))
            curves = _curves(client, run, step)
            if curves:
                out.append(f'<figure class="plot"><img alt="{step} curves" src="data:image/png;base64,{curves}"></figure>')
            for path, data in _images(client, run.info.run_id, tmp):
                name = html.escape(path)
                out.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>')
        config = _logged_config(client, pipeline_run_id, tmp)
    if config:
        out.append(f"<h2>Config</h2><details><summary>config.json</summary><pre>{html.escape(config)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out)


def _logged_config(client: Any, run_id: str, tmp: str) -> str | None:
    try:
        with open(client.download_artifacts(run_id, "config.json", tmp)) as f:
            return json.dumps(json.load(f), indent=1)
    except Exception:  # noqa: BLE001 - an older run without it: the report goes on
        return None


def write_report(tracking_uri: str, pipeline_run_id: str, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/<pipeline run id>.html`` and log it to the pipeline run as ``report.html``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    path = Path(out_dir) / f"{pipeline_run_id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(client, pipeline_run_id), encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / REPORT_NAME
        named.write_bytes(path.read_bytes())
        client.log_artifact(pipeline_run_id, str(named))
    return path
