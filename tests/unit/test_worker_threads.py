"""``train_*.torch_threads``: a training worker may use more torch threads than the CPUs Ray reserved for it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vidgen_core.config import PipelineConfig
from vidgen_core.train.ray_worker import worker_context


@pytest.fixture
def fake_ray_context(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.train
    import ray.train.torch

    context = SimpleNamespace(get_world_rank=lambda: 0, get_world_size=lambda: 1)
    monkeypatch.setattr(ray.train, "get_context", lambda: context)
    monkeypatch.setattr(ray.train.torch, "get_device", lambda: torch.device("cpu"))


def test_the_worker_sets_the_configured_thread_count_and_otherwise_leaves_it(fake_ray_context: None) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert worker_context().world == 1 and torch.get_num_threads() == 1  # None: Ray's default stays
        worker_context(torch_threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_default_recipe_gives_the_gan_two_threads_and_refuses_zero() -> None:
    from vidgen_core.config import load_config

    assert load_config(Path(__file__).parents[2] / "workflows" / "configs" / "default.yaml").train_gan.torch_threads == 2
    assert PipelineConfig().train_gan.torch_threads is None
    with pytest.raises(ValueError, match="torch_threads"):
        PipelineConfig.model_validate({"train_gan": {"torch_threads": 0}})
