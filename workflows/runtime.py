"""Process-level set-up shared by the CLI and the executor: Ray and the work directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vidgen_core.config import RayConfig
from vidgen_core.errors import UserError
from vidgen_core.ray_runtime import ensure_ray

log = logging.getLogger(__name__)


def resolve_workdir(workdir: str | os.PathLike[str] | None) -> Path:
    """Absolute work directory (default ``./vidgen-work``), created if missing.

    Absolute because Ray workers may run in another current directory.
    """
    path = Path(workdir or "vidgen-work").expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"work directory '{path}' exists and is not a directory; pass --workdir DIR")
    path.mkdir(parents=True, exist_ok=True)
    return path


def init_ray(cfg: RayConfig) -> bool:
    """Connect to Ray for a pipeline or CLI command: :func:`vidgen_core.ray_runtime.ensure_ray`
    with the ``ray`` config section, vidgen's console handlers taking Ray's loggers first.

    Returns True when this call started or connected Ray (so the caller should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    if not (cfg.address or os.environ.get("RAY_ADDRESS")):
        # With RAY_AUTH_MODE unset, ray.init turns token authentication on for the new local
        # cluster (creating ~/.ray/auth_token if missing) and logs a warning saying so. Leave the
        # mode to Ray: setting RAY_AUTH_MODE here would come too late, since Ray reads it when
        # imported, and the driver would then fail to authenticate with its own GCS. Instead its
        # logger is adopted first, so the warning goes to the run's log file, not the console.
        from workflows.console import adopt_loggers

        adopt_loggers()
    return ensure_ray(cfg.address, cfg.num_cpus)


LOCAL_RAY_ENV = "VIDGEN_LOCAL_RAY"


def step_env(local: bool) -> dict[str, str]:
    """Environment variables for the steps' Ray tasks (everything they start inherits them).

    ``local``: vidgen started this Ray itself (no ``ray.address`` / ``RAY_ADDRESS``).
    The steps are told so through ``VIDGEN_LOCAL_RAY=1``, since the ``RAY_ADDRESS``
    set below would otherwise make them take it for a remote cluster that an
    autoscaler may grow (:func:`vidgen_core.train.ray_driver.check_resources`).

    ``RAY_ADDRESS`` names this cluster: Ray's State API client (which Train V2's
    placement-group cleaner polls every second) otherwise looks for "the" Ray
    instance on the machine and fails when there are several, e.g. two
    pipelines side by side or a laptop with another Ray running. ``RAY_TQDM=0``:
    see :func:`init_ray`.
    """
    import ray

    env = {"RAY_TQDM": "0"}
    if local:
        env[LOCAL_RAY_ENV] = "1"
    try:
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - e.g. Ray Client mode has no GCS address to give
        pass
    return env
