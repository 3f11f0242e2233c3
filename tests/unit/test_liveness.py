"""Driver identity tags tell live drivers from killed ones."""

from __future__ import annotations

import socket
import subprocess
import sys

from workflows.liveness import driver_id, is_alive


def test_this_process_is_alive_and_an_exited_one_is_not() -> None:
    assert is_alive(driver_id()) is True
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = driver_id(proc.pid)
    proc.wait()
    assert is_alive(tag) is False


def test_a_recycled_pid_or_another_host_is_not_taken_for_the_driver() -> None:
    host, pid, start = driver_id().rsplit(":", 2)
    assert is_alive(f"{host}:{pid}:{int(start) + 1}") is False  # same pid, other process start
    assert is_alive(f"not-{socket.gethostname()}:{pid}:{start}") is None
    assert is_alive("garbage") is None
