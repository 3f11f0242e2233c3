"""The one place vidgen starts or connects to Ray.

A cluster is named by ``address`` (the config's ``ray.address``) or by
``RAY_ADDRESS`` (which ``ray job submit`` sets for the entrypoint); without
either, a local Ray is started on this machine with its dashboard bound to
127.0.0.1: the dashboard hosts Ray's State API, which Train V2's
placement-group cleaner polls every second (and warns each time it is missing).
Library code (ingest, training, embedding) calls :func:`ensure_ray` and so
joins whatever the caller started; the CLI starts it first with its own settings.
"""

from __future__ import annotations

import os

from vidgen_core.errors import UserError


def ensure_ray(address: str | None = None, num_cpus: int | None = None, *, dashboard: bool = True,
               log_to_driver: bool = True) -> bool:
    """Connect to Ray (or start a local one) unless this process already has. True when this call did it.

    Args:
        address: a running cluster (``ray://`` or ``HOST:PORT``); default ``RAY_ADDRESS``, else local.
        num_cpus: CPUs of a local Ray (default: the machine's).
        dashboard: start a local Ray's dashboard (on 127.0.0.1). Off for short-lived
            commands that start no training (a few seconds and ~100 MB less).
        log_to_driver: forward workers' output to this process.

    Raises:
        UserError: the named cluster cannot be reached.
    """
    import ray

    if ray.is_initialized():
        return False
    # Ray Data inside steps would otherwise send distributed-tqdm control lines to the
    # driver (which warns when tqdm is missing); with this off, it logs its progress as
    # plain lines, which go to the run's log file. Workers of a local Ray inherit it.
    os.environ.setdefault("RAY_TQDM", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=log_to_driver, configure_logging=False)
        except ConnectionError as exc:
            raise UserError(
                f"cannot reach the Ray cluster at '{address}': {exc}; start it (`ray start --head`) "
                "or unset ray.address / RAY_ADDRESS to use a local one"
            ) from None
        return True
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        # The caller's logging handlers decide what reaches the console (workflows.console for the CLI).
        configure_logging=False,
        log_to_driver=log_to_driver,
    )
    return True
