"""Shared fixtures: one session-scoped local Ray cluster, isolated HOME.

Tests must leave nothing in the user's home: HOME points at a temporary folder
before Ray or MLflow is imported by any test, and Ray's token auth is off for
the throwaway local cluster (it would otherwise write ~/.ray/auth_token).
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

# Fixtures that start real processes (mlflow server, `vidgen run`) and always stop them.
from procs import mlflow_server, spawn  # noqa: E402,F401

# The reliability drills' recorder and the hooks that write their table into bench/RESULTS.md.
from drills import drill, pytest_runtest_makereport, pytest_sessionfinish  # noqa: E402,F401

_HOME = tempfile.mkdtemp(prefix="vidgen-test-home-")
os.environ["HOME"] = _HOME
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# Ray Train polls worker health every few seconds by default; each short test run
# would wait that long to notice its workers finished.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def import_bench(monkeypatch):
    """``import_bench("train")``: a bench/ script imported as a module by its name, forgotten after the test.

    By name, not from a file spec: processes it spawns unpickle its functions, and spawn hands them
    this process's sys.path.
    """
    names: list[str] = []

    def load(name: str):
        monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
        monkeypatch.delitem(sys.modules, name, raising=False)
        names.append(name)
        return importlib.import_module(name)

    yield load
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster shared by every test that asks for it."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synth_videos(tmp_path_factory) -> Path:
    """A small labelled moving-shapes data set, generated once per session."""
    from vidgen_core.config import SynthConfig
    from vidgen_core.video.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(videos_per_class=2, width=48, height=40, seed=1), out)
    return out


TINY_RUN_PHASE = 3


def _phase(item: pytest.Item) -> int:
    """Run order: unit tests first (they share the CPU with the background tiny run), then
    integration and reliability, the other whole-workflow tests, and last the tiny run's readers."""
    if "tiny_run" in getattr(item, "fixturenames", ()):
        return TINY_RUN_PHASE
    folder = Path(str(item.fspath)).parent.name
    return {"unit": 0, "e2e": 2}.get(folder, 1)


def pytest_collection_modifyitems(config, items):
    """Tests that read the tiny run go last (it runs meanwhile); drills marked ``slow`` run with
    `make drills` (VIDGEN_SLOW_DRILLS=1), not in `make test`'s 20-minute budget."""
    items.sort(key=_phase)  # stable: file order within each phase
    if os.environ.get("VIDGEN_SLOW_DRILLS") == "1":
        return
    skip = pytest.mark.skip(reason="slow drill: run it with `make drills` (VIDGEN_SLOW_DRILLS=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def tiny_run_started(request, tmp_path_factory):
    """The tiny workflow, started with the session when a selected test reads it (None otherwise)."""
    if not any(_phase(item) == TINY_RUN_PHASE for item in request.session.items):
        yield None
        return
    from tiny_run import TinyRun

    run = TinyRun(tmp_path_factory.mktemp("tiny-run-wd"))
    _background.append(run)
    yield run
    _background.remove(run)
    run.stop()


_background: list = []  # the tiny run while it is in flight


def pytest_runtest_setup(item):
    for run in _background:
        run.release_cpu_if_done()
