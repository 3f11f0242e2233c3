"""``train_*.keep_freed_memory``: a training process's malloc keeps what a step frees for the next step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vidgen_core.config import PipelineConfig
from vidgen_core.train import allocator
from vidgen_core.train.ray_worker import worker_context

ROOT = Path(__file__).resolve().parents[2]
glibc_only = pytest.mark.skipif(allocator._glibc() is None, reason="mallopt is glibc's")

# A few VAE training steps in a fresh process; prints minor page faults per step over the last 10.
_STEPS = """
import json, resource, sys
import torch
from vidgen_core.config import PipelineConfig
from vidgen_core.models.vae import VideoVAE
from vidgen_core.train.allocator import keep_freed_memory
from vidgen_core.train.fit_vae import vae_loss
torch.set_num_threads(1)
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
cfg = PipelineConfig.model_validate({"vae": {"base_channels": 16, "channel_mult": [1, 2]}})
torch.manual_seed(0)
model = VideoVAE(cfg.vae)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.rand(4, 3, 8, 32, 32) * 2 - 1
for step in range(16):
    if step == 6:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    opt.zero_grad()
    loss, _, _ = vae_loss(model, x, cfg.train_vae.kl_weight, cfg.train_vae.recon_loss)
    loss.backward()
    opt.step()
print(json.dumps({"kept": kept, "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10}))
"""


def _faults_per_step(mode: str) -> dict:
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", _STEPS, mode], env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc_only
def test_kept_memory_stops_the_page_faults_of_each_training_step() -> None:
    default, kept = _faults_per_step("default"), _faults_per_step("keep")
    assert kept["kept"] is True and default["kept"] is False
    # glibc's defaults hand freed activations back and fault them in again every step (~8,000 on
    # this VAE at 32x32); kept, the heap serves the next step from the same pages.
    assert default["faults_per_step"] > 200, default
    assert kept["faults_per_step"] < default["faults_per_step"] / 10, (default, kept)


def test_the_setting_is_on_by_default_and_a_worker_applies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = PipelineConfig()
    assert cfg.train_vae.keep_freed_memory and cfg.train_gan.keep_freed_memory
    import ray.train
    import ray.train.torch

    monkeypatch.setattr(ray.train, "get_context", lambda: SimpleNamespace(get_world_rank=lambda: 0, get_world_size=lambda: 1))
    monkeypatch.setattr(ray.train.torch, "get_device", lambda: torch.device("cpu"))
    calls: list[bool] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(True) or True)
    worker_context(keep_freed_memory=False)
    assert calls == []  # off: glibc's defaults stay
    worker_context(keep_freed_memory=True)
    assert calls == [True]


@pytest.mark.parametrize("section", ["train_vae", "train_gan", "judge"])
def test_a_value_that_is_not_a_boolean_is_refused(section: str) -> None:
    with pytest.raises(ValueError, match="keep_freed_memory"):
        PipelineConfig.model_validate({section: {"keep_freed_memory": "maybe"}})
