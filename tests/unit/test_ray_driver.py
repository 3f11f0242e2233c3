"""Driver-side Ray Train helpers that need no cluster."""

from __future__ import annotations

from vidgen_core.errors import UserError
from vidgen_core.train.ray_driver import find_user_error


class _WorkerGroupError(Exception):
    """Shaped like Ray Train's: the failures of each rank under ``worker_failures``."""

    def __init__(self, failures: dict[int, BaseException]) -> None:
        super().__init__("worker group failed")
        self.worker_failures = failures


def test_a_worker_s_user_error_is_found_under_ray_s_wrappers() -> None:
    wanted = UserError("the train split has 3 clips: lower train_vae.batch_size")
    try:
        try:
            raise wanted
        except UserError as exc:
            raise RuntimeError("RayTaskError(UserError)") from exc
    except RuntimeError as task_error:
        wrapped = _WorkerGroupError({0: ValueError("rank 0 fine"), 1: task_error})
    assert find_user_error(wrapped) is wanted
    assert find_user_error(_WorkerGroupError({0: ValueError("no user error here")})) is None
