"""The tiny workflow, run once per test session as a user starts it, in the background.

`vidgen run` on ``workflows/configs/tiny.yaml`` as a subprocess with its own local
Ray and none of the test session's Ray or MLflow settings. It starts with the
session (tests/conftest.py) and the tests that look at it run last: while its
VAE trains on one core, the unit tests use the other (the run alone takes
~4.5 minutes on 2 cores, ~2.5 of them one-core training).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from drills import SECRETS
from procs import stop_session

RECIPE = Path(__file__).resolve().parents[1] / "workflows" / "configs" / "tiny.yaml"
TIMEOUT_S = 900
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


class OneThreadMeanwhile:
    """This process's torch, and the processes it starts, use one thread while the run goes on.

    Two OpenMP threads per process on 2 cores already busy with the run spin-wait for
    each other: in CI, unit tests that take 6 s alone took 44-54 s beside it.
    """

    def __init__(self) -> None:
        import torch

        self._torch_threads = torch.get_num_threads()
        self._env = {k: os.environ.get(k) for k in THREAD_VARS}
        torch.set_num_threads(1)
        os.environ.update({k: "1" for k in THREAD_VARS})
        self.active = True

    def end(self) -> None:
        import torch

        if not self.active:
            return
        torch.set_num_threads(self._torch_threads)
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self.active = False


class TinyRun:
    """A started `vidgen run`; :meth:`result` waits for it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        # As a user starts it: RAY_AUTH_MODE unset too, so Ray turns token auth on for its local
        # cluster (the token goes to the tests' temporary HOME) exactly as on a user's machine.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_DATA_", "MLFLOW_")) and k != "RAY_AUTH_MODE"}
        # Secrets a user's shell may hold: the drill test_secrets.py looks for them in everything
        # the run wrote (vidgen never reads these two; they must not be copied anywhere either).
        env.update(SECRETS)
        self.lines: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workflows.cli", "run", "--config", str(RECIPE), "--workdir", str(workdir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
            cwd=str(RECIPE.parents[2]),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._result: dict[str, Any] | None = None
        self._sharing = OneThreadMeanwhile()

    def release_cpu_if_done(self) -> None:
        """Give this process its threads back once the run has ended (called before each test)."""
        if self._sharing.active and self.proc.poll() is not None:
            self._sharing.end()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def result(self) -> dict[str, Any]:
        """``{"rc", "lines": [(monotonic time, console line)], "workdir", "seconds"}`` of the finished run."""
        if self._result is None:
            try:
                rc = self.proc.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - self.t0)))
            finally:
                if self.proc.poll() is None:
                    stop_session(self.proc)
            self._reader.join(timeout=10)
            self._sharing.end()
            # What the user saw, kept beside the work dir for a person checking a CI run afterwards.
            (self.workdir.parent / "tiny-run-console.txt").write_text("".join(f"{line}\n" for _, line in self.lines))
            self._result = {"rc": rc, "lines": self.lines, "workdir": self.workdir, "seconds": time.monotonic() - self.t0}
        return self._result

    def stop(self) -> None:
        """End the run and everything it started (a session that ends early must not leave it behind)."""
        if self.proc.poll() is None:
            stop_session(self.proc)
        self._sharing.end()
