"""``train_*.worker_niceness``: the ranks' own nice value, passed to Ray Train as their runtime env."""

from __future__ import annotations

import pytest

from vidgen_core.config import PipelineConfig
from vidgen_core.train.ray_driver import worker_runtime_env


def test_the_ranks_keep_rays_niceness_by_default_and_take_a_configured_one() -> None:
    cfg = PipelineConfig()
    assert cfg.train_vae.worker_niceness is None and cfg.train_gan.worker_niceness is None
    # None: no runtime env of vidgen's, so the ranks get whatever Ray gives its workers (15 by default).
    assert worker_runtime_env(cfg.train_vae) == {}
    zero = PipelineConfig.model_validate({"train_vae": {"worker_niceness": 0}}).train_vae
    assert worker_runtime_env(zero) == {"env_vars": {"RAY_worker_niceness": "0"}}
    seven = PipelineConfig.model_validate({"train_gan": {"worker_niceness": 7}}).train_gan
    assert worker_runtime_env(seven) == {"env_vars": {"RAY_worker_niceness": "7"}}


@pytest.mark.parametrize("value", [-1, 20])
def test_a_nice_value_outside_0_to_19_is_refused(value: int) -> None:
    # Below 0 would need privileges a Ray worker lacks; Linux stops at 19.
    with pytest.raises(ValueError, match="worker_niceness"):
        PipelineConfig.model_validate({"train_vae": {"worker_niceness": value}})
