"""What `vidgen run` prints, and the log file that keeps everything.

Two handlers on the root logger:

* the **log file** ``WORKDIR/logs/<pipeline-run-id>.log`` gets every record at
  INFO and above, from every logger (vidgen, Ray, MLflow, Python warnings) and
  every line Ray's workers print;
* the **console** tells the user's own story: the ``vidgen`` logger (step
  start/finish, progress, summary), warnings of vidgen's own modules, and errors
  from anyone: a real error is never muted. ``verbose`` shows everything.

Third-party libraries are not muted by level: their own console handlers are
removed so that their records reach these two handlers (:func:`adopt_loggers`),
and the lines Ray forwards from its workers (log-to-driver) go through
:func:`route_ray_output` instead of Ray's printer. The causes of the noise a
normal run used to show (no dashboard, so no State API; tqdm magic lines) are
fixed where Ray starts (:mod:`workflows.runtime`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

STORY = "vidgen"  # the logger of the user's story
WORKER_OUTPUT = "ray_worker_output"  # lines Ray forwards from worker processes
_OWN = ("vidgen", "vidgen_core", "workflows")
_FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVELS = {"WARN": logging.WARNING, "FATAL": logging.CRITICAL}


def story() -> logging.Logger:
    """The logger whose INFO records are the console's main text."""
    return logging.getLogger(STORY)


def _own(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _OWN)


class ConsoleFilter(logging.Filter):
    """Which records reach the console (the log file gets them all)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):  # e.g. a traceback already summed up in one line
            return False
        if self.verbose or record.levelno >= logging.ERROR:
            return True
        if record.name == STORY:
            return record.levelno >= logging.INFO
        if record.name == "py.warnings":  # a warnings.warn from vidgen's own code is for the user
            return any(f"/{p}/" in str(record.args[0] if record.args else record.msg) for p in _OWN[1:])
        return _own(record.name) and record.levelno >= logging.WARNING


class _ConsoleHandler(logging.StreamHandler):
    """Writes above live progress bars (tqdm.write) when the console is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.tty = stream.isatty()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.tty:
            super().emit(record)
            return
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - the console must not raise
            self.handleError(record)


class _ConsoleFormatter(logging.Formatter):
    """The story as plain lines; anything else with its level and origin."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == STORY:
            return record.getMessage()
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info and not getattr(record, "file_only", False):
            text += "\n" + self.formatException(record.exc_info)
        return text


class RunLog:
    """The console and log-file handlers of one `vidgen run` (see the module docstring)."""

    def __init__(self, workdir: Path, verbose: bool = False, stream: TextIO | None = None) -> None:
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.dir = workdir / "logs"
        self.dir.mkdir(parents=True, exist_ok=True)
        # Named after the pipeline run once it exists (rename): until then, after this process.
        self.path = self.dir / f"starting-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        self.file = logging.FileHandler(self.path, encoding="utf-8")
        self.file.setLevel(logging.INFO)
        self.file.setFormatter(logging.Formatter(_FILE_FORMAT))
        self.console = _ConsoleHandler(self.stream)
        self.console.addFilter(ConsoleFilter(verbose))
        self.console.setFormatter(_ConsoleFormatter())
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(logging.INFO)
        root.addHandler(self.file)
        root.addHandler(self.console)
        story().setLevel(logging.INFO)
        logging.captureWarnings(True)
        import mlflow  # noqa: F401 - MLflow sets up its loggers on import; adopt them before it logs

        adopt_loggers()

    def name_after(self, pipeline_run_id: str) -> Path:
        """Rename the log file ``<pipeline_run_id>.log`` (the open handler keeps writing to it)."""
        target = self.dir / f"{pipeline_run_id}.log"
        os.replace(self.path, target)
        self.path = target
        self.file.baseFilename = str(target)
        return target

    def save_to_mlflow(self, tracking_uri: str, run_id: str) -> None:
        """Log the log file as an artifact of the pipeline run (best-effort: the file stays anyway)."""
        self.file.flush()
        try:
            from mlflow import MlflowClient

            MlflowClient(tracking_uri).log_artifact(run_id, str(self.path), "logs")
        except Exception as exc:  # noqa: BLE001 - a lost upload must not turn a finished run into a failure
            logging.getLogger(__name__).warning("could not log %s to MLflow run %s: %s", self.path, run_id, exc)

    def close(self) -> None:
        root = logging.getLogger()
        for handler in (self.file, self.console):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(self._root_level)
        logging.captureWarnings(False)


def adopt_loggers() -> None:
    """Send third-party loggers' records to the root handlers instead of their own console handlers.

    Ray and MLflow give their loggers a handler writing to stderr and turn
    propagation off; such records would bypass both the filter and the log file.
    Only vidgen's root handlers write to the console afterwards.
    File handlers (e.g. Ray Data's own log in the Ray session folder) stay.
    """
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if _own(name) or not isinstance(logger, logging.Logger):
            continue
        # Any stream handler that is not a file is a console of some kind (MLflow's wraps stderr).
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        # A logger that stops propagation (Ray's after ray.init) would hand its records to
        # Python's last-resort stderr printer: let them reach the root handlers.
        logger.propagate = True


def _worker_line_level(line: str) -> int:
    found = _LEVEL.search(line[:80])  # a logging prefix sits at the start: "2026-.. WARNING file.py:12 -- ..."
    if found:
        word = found.group(1)
        return _LEVELS.get(word, getattr(logging, word, logging.INFO))
    # Unprefixed lines are mostly Ray's own INFO messages (its worker handler prints bare
    # messages to stderr); a step's failure reaches the user through the executor instead.
    return logging.INFO


def route_ray_output() -> bool:
    """Replace Ray's printer of worker output with records on the ``ray_worker_output`` logger.

    Each forwarded line keeps its origin (task or actor name, pid) and gets the
    level its logging prefix names (INFO without one), so
    the console filter shows worker errors and the log file keeps every line.
    Ray's distributed-tqdm control lines are dropped: vidgen draws its own progress.
    Returns False (Ray keeps printing) if this Ray has no such dispatcher.
    """
    try:
        from ray._private import worker as ray_worker
        from ray.experimental.tqdm_ray import RAY_TQDM_MAGIC
    except ImportError:
        return False
    dispatcher = getattr(ray_worker, "global_worker_stdstream_dispatcher", None)
    if dispatcher is None:
        return False
    log = logging.getLogger(WORKER_OUTPUT)

    def handle(data: dict[str, Any]) -> None:
        origin = data.get("actor_name") or data.get("task_name") or "worker"
        prefix = f"({origin} pid={data.get('pid')})"
        lines = data.get("lines", [])
        if data.get("pid") == "autoscaler":  # as Ray's printer does: its events, not its status dumps
            lines = list(ray_worker.filter_autoscaler_events(lines))
        for line in lines:
            if RAY_TQDM_MAGIC in line:
                continue
            line = _ANSI.sub("", line)
            level = _worker_line_level(line)
            if data.get("pid") == "raylet" and "worker processes have been started" in line:
                # The raylet's note that it started more workers than its startup concurrency: Ray's
                # own scheduling on a busy machine, nothing the user can act on. Kept in the log file.
                level = logging.INFO
            log.log(level, "%s %s", prefix, line)

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.remove_handler("vidgen")
    dispatcher.add_handler("vidgen", handle)
    return True
