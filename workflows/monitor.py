"""The console's side of a pipeline run: log file naming, Ray output routing, live progress."""

from __future__ import annotations

from typing import Any

from workflows.console import RunLog, adopt_loggers, route_ray_output, story
from workflows.executor import Monitor
from workflows.progress_view import ProgressView


class ConsoleMonitor(Monitor):
    """Names the log file after the pipeline run, takes over Ray's worker output, draws progress."""

    def __init__(self, run_log: RunLog) -> None:
        self.run_log = run_log
        self.pipeline_run_id: str | None = None
        self.view = ProgressView(story(), run_log.stream)

    def pipeline_started(self, pipeline_run_id: str) -> None:
        self.pipeline_run_id = pipeline_run_id
        self.run_log.name_after(pipeline_run_id)

    def ray_started(self) -> None:
        route_ray_output()
        adopt_loggers()  # Ray's loggers exist now

    def tick(self, running: dict[str, tuple[str, float]], board: dict[str, dict[str, Any]]) -> None:
        self.view.update(running, board)

    def close(self) -> None:
        self.view.close()
