"""Processes that tests start: each in its own session, always stopped completely.

A test that starts ``vidgen run`` or ``mlflow server`` starts it with
``start_new_session=True`` (its pid is then its session id) and stops it by
signalling that process group, then waiting until no live process of the
session remains — Ray's reaper moves to a process group of its own, but not
to another session — and SIGKILLing stragglers. Only processes of sessions a
test started are ever signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


def stop_session(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace_s: float = 20.0) -> None:
    """Signal ``proc``'s process group, wait for its whole session to exit, SIGKILL what is left."""
    sid = proc.pid
    try:
        os.killpg(sid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is not None and not session_pids(sid):
            return
        time.sleep(0.2)
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.2)


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifact store)."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self, timeout_s: float = 90.0) -> MlflowServer:
        cmd = [
            str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server on port {self.port} not healthy after {timeout_s}s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_session(self.proc)
            self.proc = None
            self.log.close()


@pytest.fixture
def mlflow_server(tmp_path_factory) -> Callable[..., MlflowServer]:
    """Factory: ``mlflow_server()`` starts a server (stopped at teardown, whatever happened)."""
    servers: list[MlflowServer] = []

    def start(root: Path | None = None, port: int | None = None) -> MlflowServer:
        server = MlflowServer(root or tmp_path_factory.mktemp("mlflow-server"), port)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def spawn() -> Callable[..., subprocess.Popen]:
    """Factory: ``spawn(cmd, **popen_kwargs)`` in a new session; every session is stopped at teardown."""
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_session(proc, signal.SIGKILL)
