"""Which driver owns a RUNNING run, and whether it is still alive.

A driver killed with SIGKILL cannot end its MLflow runs: they stay RUNNING
forever, and ``vidgen status`` would show a training that is not happening.
Every pipeline and step run is tagged with its driver's identity
(``host:pid:start_time``); a later ``vidgen run`` or ``vidgen status`` on the
same host marks RUNNING runs whose driver is gone as KILLED. The process start
time guards against a recycled pid. Runs of drivers on other hosts are left
alone: their liveness cannot be checked from here.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

DRIVER_TAG = "vidgen.driver"
KIND_TAG = "vidgen.kind"
REAPED_TAG = "vidgen.killed_reason"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its closing ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def driver_id(pid: int | None = None) -> str:
    """``host:pid:start_time`` of this process (or of ``pid``)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def is_alive(driver: str) -> bool | None:
    """True/False for a driver on this host; None when it cannot be told (another host, bad tag)."""
    try:
        host, pid_text, start = driver.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    now = _start_time(pid)
    if now is None:
        if not os.path.isdir("/proc"):  # not Linux: fall back to a bare pid check
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return False
    return start == "?" or now == start


def reap_stale_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark RUNNING pipeline/step runs of dead drivers on this host KILLED; returns their run ids."""
    reaped = []
    for run in _running(client, experiment_id):
        driver = run.data.tags.get(DRIVER_TAG)
        if driver and is_alive(driver) is False:
            client.set_tag(run.info.run_id, REAPED_TAG, f"driver {driver} is gone (killed or crashed)")
            client.set_terminated(run.info.run_id, status="KILLED")
            reaped.append(run.info.run_id)
    return reaped


def live_pipeline_in(client: MlflowClient, experiment_id: str, workdir: str) -> str | None:
    """Run id of a pipeline run in ``workdir`` whose driver on this host is alive (not this process)."""
    me = driver_id()
    for run in _running(client, experiment_id):
        tags = run.data.tags
        if tags.get(KIND_TAG) != "pipeline" or tags.get("vidgen.workdir") != workdir:
            continue
        driver = tags.get(DRIVER_TAG, "")
        if driver != me and is_alive(driver):
            return run.info.run_id
    return None


def _running(client: MlflowClient, experiment_id: str) -> list:
    # Tags are filtered in Python: a work dir path may hold quotes a filter string cannot.
    return list(client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000))
