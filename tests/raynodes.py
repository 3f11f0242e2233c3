"""A real multi-node Ray cluster on this machine, for tests: ``ray start --block`` per node.

Each node is a ``ray start --block`` in its own session with its own temp dir and
its own ports (two nodes on one machine must not share the agent, metrics or
worker ports; neither may other Ray instances on the machine). A node is stopped
by stopping its session (:func:`procs.stop_session`), never by ``ray stop``,
which would stop every Ray on the machine.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from procs import VENV_BIN, free_port, session_pids, stop_session


_TAKEN: set[int] = set()  # handed out by this process: a port once given is never given again


def _worker_port_range() -> tuple[int, int]:
    # A block of ports unlikely to be in use: Ray checks each when it starts a worker.
    base = 20000 + (os.getpid() * 37) % 30000
    return base, base + 40


def _free_ports(n: int) -> list[int]:
    lo, hi = _worker_port_range()
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        # Never inside the head's or the worker node's block of worker ports (lo..hi, lo+50..hi+50):
        # `ray start` refuses a port given to two components (seen in CI: the dashboard's).
        if port not in _TAKEN and not lo <= port <= hi + 50:
            _TAKEN.add(port)
            ports.append(port)
    return ports


class RayNode:
    """One ``ray start --block`` process (head or worker) and everything it starts."""

    def __init__(self, name: str, root: Path, env: dict[str, str], args: list[str]) -> None:
        self.name, self.root, self.env = name, root, env
        self.temp_dir = Path(tempfile.mkdtemp(prefix=f"vg{name[:1]}-", dir="/tmp"))  # short: socket paths ≤ 107 chars
        agent, grpc, metrics, rt_env, om, nm = _free_ports(6)
        lo, hi = _worker_port_range()
        if name != "head":
            lo, hi = lo + 50, hi + 50
        self.cmd = [
            str(VENV_BIN / "ray"), "start", "--block", f"--temp-dir={self.temp_dir}", "--node-ip-address=127.0.0.1",
            f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
            f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={rt_env}",
            f"--object-manager-port={om}", f"--node-manager-port={nm}",
            f"--min-worker-port={lo}", f"--max-worker-port={hi}", "--disable-usage-stats", *args,
        ]
        self.log_path = root / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RayNode:
        self.temp_dir.mkdir(parents=True, exist_ok=True)  # stop() removes it; a node may be started again
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        return self

    def pids(self, name_part: str) -> list[int]:
        """Live processes of this node whose command line contains ``name_part``."""
        out = []
        for pid in session_pids(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if name_part in cmdline:
                out.append(pid)
        return out

    def kill_raylet(self) -> int:
        """SIGKILL this node's raylet (the node dies as a machine loss would look to Ray); returns its pid."""
        pids = self.pids("/raylet ") or self.pids("raylet")
        assert pids, f"no raylet in node {self.name}"
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def stop(self) -> None:
        if self.proc is not None:
            stop_session(self.proc, grace_s=10)
            self.proc = None
            self.log.close()
            shutil.rmtree(self.temp_dir, ignore_errors=True)


class TwoNodeCluster:
    """A head (1 CPU, resource ``head_pool``) and a worker (1 CPU, resource ``worker_pool``), token auth on.

    ``head_cpus``/``worker_cpus`` and ``head_resources``/``worker_resources`` (custom resources
    added to the pools) size the nodes for a test that needs more (the node-loss drill).
    """

    def __init__(self, root: Path, token: str | None, *, head_cpus: int = 1, worker_cpus: int = 1,
                 head_resources: dict[str, float] | None = None,
                 worker_resources: dict[str, float] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS", "RAY_AUTH"))}
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # the job's `python` is this venv's
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env["RAY_AUTH_MODE"] = "token" if token else "disabled"
        if token:
            self.token_path = root / "auth_token"
            self.token_path.write_text(token)
            self.token_path.chmod(0o600)
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        # Notice a dead node in seconds, not the default ~30 s (the node-kill drill waits on it).
        env["RAY_health_check_period_ms"] = "1000"
        env["RAY_health_check_failure_threshold"] = "3"
        # On a busy 2-core machine a node's dashboard agent can take over the default 30 s to come up.
        env.setdefault("RAY_agent_register_timeout_ms", "180000")
        self.env = env
        self.gcs_port, self.dashboard_port, client_port = _free_ports(3)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.head = RayNode("head", root, env, [
            "--head", f"--port={self.gcs_port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--num-cpus={head_cpus}", "--num-gpus=0", "--resources=" + json.dumps({"head_pool": 10, **(head_resources or {})}),
            f"--ray-client-server-port={client_port}",
        ])
        self.worker = RayNode("worker", root, env, [
            f"--address=127.0.0.1:{self.gcs_port}", f"--num-cpus={worker_cpus}", "--num-gpus=0",
            "--resources=" + json.dumps({"worker_pool": 10, **(worker_resources or {})}),
        ])

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_path.read_text()}"} if self.env["RAY_AUTH_MODE"] == "token" else {}

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.address + path, headers=self._headers() if headers is None else headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def alive_nodes(self) -> list[dict]:
        status, body = self.get("/api/v0/nodes?limit=100")
        if status != 200:
            return []
        nodes = json.loads(body)["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def start(self, timeout_s: float = 120.0) -> TwoNodeCluster:
        self.head.start()
        self._wait(lambda: self.get("/api/version")[0] == 200, timeout_s, "the head's dashboard")
        for attempt in (1, 2):
            self.worker.start()
            try:
                self._wait(lambda: len(self.alive_nodes()) == 2, timeout_s, "two alive nodes")
                return self
            except RuntimeError as exc:
                # `ray start` gives its raylet a hard-coded 30 s to register with the GCS
                # (ray/_private/node.py) and exits if it has not; a loaded 2-core host can take
                # longer (CI, stop 32). That is the host, not the code under test: one fresh try.
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise
                self.worker.stop()
        return self

    def _wait(self, ok, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in (self.head, self.worker):
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"ray node {node.name} exited: {node.log_path.read_text()[-3000:]}")
            try:
                if ok():
                    return
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"no {what} after {timeout_s}s; head log: {self.head.log_path.read_text()[-3000:]}")

    def node_ids(self) -> dict[str, str]:
        """``{"head": id, "worker": id}`` from the nodes' custom resources."""
        out = {}
        for n in self.alive_nodes():
            res = n.get("resources_total", {})
            out["head" if "head_pool" in res else "worker"] = n["node_id"]
        return out

    def stop(self) -> None:
        for node in (self.worker, self.head):
            node.stop()
