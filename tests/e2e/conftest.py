"""One run of the tiny workflow per test session, shared by the e2e tests that look at its results.

It starts with the session in the background (tests/tiny_run.py, tests/conftest.py).
The tests that use it check the console, the log file, the MLflow UI, the report
(test_console_run, test_ui_browser) and the models and the registry
(test_pipeline, which loads the finished run's results by running the same
pipeline again in-process: every step is then reused).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_run(tiny_run_started) -> dict:
    """``{"rc", "lines": [(monotonic time, console line)], "workdir", "seconds"}`` of the finished run."""
    return tiny_run_started.result()
