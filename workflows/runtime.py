"""Process-level set-up shared by the CLI and the executor: Ray and the work directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vidgen_core.config import RayConfig
from vidgen_core.errors import UserError

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
    """Connect to Ray: an existing cluster if one is named, else start a local one.

    A cluster is named by ``ray.address`` in the config or by ``RAY_ADDRESS``
    (which ``ray job submit`` sets for the entrypoint). Returns True when this
    call started Ray (so the caller should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    # Ray Data's per-operator progress bars flood a log; one summary bar is enough.
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as exc:
            raise UserError(
                f"cannot reach the Ray cluster at '{address}': {exc}; start it (`ray start --head`) "
                "or unset ray.address / RAY_ADDRESS to use a local one"
            ) from None
        return True
    ray.init(
        address="local",
        num_cpus=cfg.num_cpus,
        include_dashboard=False,
        configure_logging=True,
        logging_level=logging.WARNING,
    )
    return True
