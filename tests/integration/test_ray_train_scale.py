"""Ray Train at scale on a real local Ray cluster: DDP equivalence, recovery from a killed worker,
resume with identical optimizer/EMA state, and the GPU check.

Tiny models; the 2-CPU session cluster runs two workers at 0.5 CPU each.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen_core.config import PipelineConfig, TrainConfig
from vidgen_core.errors import UserError
from vidgen_core.train.checkpoint import load_state, read_meta

pytestmark = pytest.mark.integration

CLIP_LEN, SIZE, NUM_CLASSES = 8, 16, 3


def _config(vae: dict | None = None, **train: object) -> PipelineConfig:
    base = {"steps": 3, "batch_size": 2, "checkpoint_every": 100, "log_every": 1, "num_workers": 1,
            "cpus_per_worker": 0.5, "max_failures": 0}
    base.update(train)
    return PipelineConfig.model_validate({
        "ingest": {"clip_len": CLIP_LEN, "size": SIZE},
        "vae": vae or {"base_channels": 8},
        "gan": {"base_channels": 8, "noise_dim": 8},
        "train_vae": base,
        "train_gan": {**{k: v for k, v in base.items() if k in TrainConfig.model_fields}, "lr": 2e-4},  # no VAE-only keys
    })


def _dataset(ray, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = [{"frames": rng.integers(0, 256, size=(CLIP_LEN, SIZE, SIZE, 3), dtype=np.uint8), "label": i % NUM_CLASSES}
            for i in range(n)]
    return ray.data.from_items(rows)


def _assert_states_match(a, b, atol: float) -> float:
    """Models, Adam moments, schedule positions and EMAs of two TrainingStates agree; returns the max |diff|."""
    worst = 0.0
    for name in a.models:
        for k, v in a.models[name].items():
            worst = max(worst, float((v.float() - b.models[name][k].float()).abs().max()))
            assert torch.allclose(v.float(), b.models[name][k].float(), atol=atol), (name, k)
        oa, ob = a.optimizers[name], b.optimizers[name]
        assert oa["scheduler"]["last_epoch"] == ob["scheduler"]["last_epoch"]
        assert oa["scheduler"]["base_lrs"] == ob["scheduler"]["base_lrs"]
        for i, st in oa["optimizer"]["state"].items():
            for key, value in st.items():
                assert torch.allclose(value, ob["optimizer"]["state"][i][key], atol=atol), (name, i, key)
    for name, avg in a.averages.items():
        assert avg["updates"] == b.averages[name]["updates"]
        for k, v in avg["module"].items():
            assert torch.allclose(v, b.averages[name]["module"][k], atol=atol), ("ema", name, k)
    return worst


def test_ddp_two_workers_match_one_worker_with_double_batch(tmp_path, ray_cluster) -> None:
    """2 CPU workers × batch 2 for 3 steps = 1 worker × batch 4 on the same data order (float tolerance)."""
    from vidgen_core.train.ray_train import train_vae_ray

    # 16 base channels: no one-channel GroupNorm groups (see tests/unit/test_train_scale.py::EQUIV_VAE).
    vae = {"base_channels": 16}
    ds = _dataset(ray_cluster, 8).materialize()  # two global batches of 4 per epoch
    states = []
    for workers, batch in ((1, 4), (2, 2)):
        # fp32: the tolerance is float32 summation order (auto would take bf16 on an AMX CPU).
        cfg = _config(vae, steps=3, batch_size=batch, num_workers=workers, data_order="deterministic", precision="fp32")
        out = train_vae_ray(cfg, str(tmp_path / "none"), str(tmp_path / f"m{workers}"), str(tmp_path / "ray"),
                            f"equiv-{workers}", None, None, dataset=ds)
        assert out["steps"] == 3 and out["checkpoint"].endswith("checkpoint_00000003")
        states.append(load_state(out["checkpoint"]))
    assert states[0].data == states[1].data == {"epoch": 1, "batch": 1}
    worst = _assert_states_match(states[0], states[1], atol=2e-5)
    print(f"DDP equivalence: max |param diff| = {worst:.2e} after 3 steps")


def _status(status_dir: Path, rank: int) -> list[dict]:
    path = status_dir / f"rank{rank}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _latest_checkpoint(run_dir: Path) -> int:
    steps = []
    for d in run_dir.glob("checkpoint_0*"):
        try:
            steps.append(int(read_meta(d)["step"]))
        except (FileNotFoundError, ValueError):
            continue
    return max(steps, default=0)


@pytest.mark.reliability
def test_sigkill_of_a_worker_recovers_from_the_last_checkpoint(tmp_path, ray_cluster, drill) -> None:
    """Kill rank 1 mid-run: the group restarts from the latest checkpoint and finishes every step."""
    from vidgen_core.train.ray_train import train_vae_ray

    case = drill("training worker killed", "fault", "SIGKILL of DDP rank 1 of 2 mid-run (Ray Train, VAE, 40 steps)",
                 "the group restarts in a new process from the latest checkpoint, loses at most one checkpoint "
                 "interval and finishes every step")

    steps, every = 40, 5
    cfg = _config(steps=steps, checkpoint_every=every, num_workers=2, max_failures=1, checkpoint_keep=2)
    storage, name = tmp_path / "ray", "fault"
    status_dir, run_dir = storage / name / "workers", storage / name
    result: dict = {}

    def run() -> None:
        try:
            result["out"] = train_vae_ray(cfg, str(tmp_path / "none"), str(tmp_path / "m"), str(storage), name,
                                          None, None, dataset=_dataset(ray_cluster, 8))
        except BaseException as exc:  # surfaced by the assertions below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.time() + 180
    victim = None
    while time.time() < deadline and thread.is_alive():
        lines = _status(status_dir, 1)
        progress = [r for r in lines if r["event"] == "progress"]
        if progress and progress[-1]["step"] >= 2 * every + 2 and _latest_checkpoint(run_dir) >= 2 * every:
            victim = progress[-1]
            break
        time.sleep(0.02)
    assert victim is not None, f"the run never got past step {2 * every + 2} before the deadline: {result}"
    checkpoint_at_kill = _latest_checkpoint(run_dir)
    os.kill(victim["pid"], signal.SIGKILL)
    kill_step = max(r["step"] for r in _status(status_dir, 1) + _status(status_dir, 0) if r["event"] == "progress")
    thread.join(timeout=240)
    assert not thread.is_alive(), "the run did not finish after the worker was killed"
    assert "error" not in result, result.get("error")

    out = result["out"]
    starts = [r for r in _status(status_dir, 1) if r["event"] == "start"]
    assert len(starts) == 2 and starts[1]["pid"] != victim["pid"]  # a second attempt, in a new process
    resumed = starts[1]["start_step"]
    assert out["start_step"] == resumed >= checkpoint_at_kill >= every  # from the last checkpoint, not from 0
    assert kill_step - resumed <= every, (kill_step, resumed)  # lost at most one checkpoint interval
    assert out["steps"] == steps and out["checkpoint"].endswith(f"checkpoint_{steps:08d}")
    assert read_meta(out["checkpoint"])["step"] == steps
    assert len([d for d in run_dir.glob("checkpoint_0*") if d.is_dir()]) <= 2  # checkpoint_keep
    case.figure = f"steps lost {kill_step - resumed} <= interval {every}; steps finished {out['steps']}/{steps}"
    print(f"fault test: killed rank 1 (pid {victim['pid']}) at step {kill_step}; resumed from step {resumed} "
          f"(latest checkpoint at kill: {checkpoint_at_kill}); lost {kill_step - resumed} steps <= {every}")


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> str:
    """An (untrained) VAE model directory for the GAN tests."""
    from vidgen_core.config import VAEConfig
    from vidgen_core.models.io import save_model
    from vidgen_core.models.vae import VideoVAE

    cfg = VAEConfig(base_channels=8)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("vae") / "model"
    save_model(VideoVAE(cfg), "vae", cfg.model_dump(mode="json"), out,
               extra={"clip_len": CLIP_LEN, "size": SIZE, "latent_shape": [4, 4, 4, 4]})
    return str(out)


def test_gan_rerun_resumes_with_identical_optimizer_and_ema_state(tmp_path, ray_cluster, vae_dir) -> None:
    """Stop at step 2, re-run to 4 under the same name: ends exactly where an uninterrupted 4-step run does."""
    from vidgen_core.data.schema import SCHEMA_VERSION, write_manifest
    from vidgen_core.train.ray_train import train_gan_ray

    shards = tmp_path / "shards"
    shards.mkdir()
    write_manifest(str(shards), {"schema_version": SCHEMA_VERSION, "label_names": ["a", "b", "c"], "shards": []})
    ds = _dataset(ray_cluster, 6).materialize()

    def run(name: str, steps: int) -> dict:
        cfg = _config(steps=steps, checkpoint_every=2, warmup_steps=3, data_order="deterministic")
        return train_gan_ray(cfg, str(shards), vae_dir, str(tmp_path / f"g-{name}-{steps}"), str(tmp_path / "ray"),
                             name, None, None, dataset=ds)

    straight = run("straight", 4)
    stopped = run("stopped", 2)
    assert stopped["start_step"] == 0 and stopped["checkpoint"].endswith("checkpoint_00000002")
    resumed = run("stopped", 4)
    assert resumed["start_step"] == 2  # continued from the checkpoint, not from scratch
    a, b = load_state(straight["checkpoint"]), load_state(resumed["checkpoint"])
    assert a.step == b.step == 4 and a.data == b.data
    assert set(a.averages) == {"generator"}  # EMA is part of the state
    worst = _assert_states_match(a, b, atol=1e-6)
    print(f"resume test: max |param diff| straight vs stopped+resumed = {worst:.2e}")

    from vidgen_core.models.io import load_model

    g, doc = load_model(resumed["model_dir"])  # the served generator holds the EMA weights
    assert doc["extra"]["ema"] is True
    ema = b.averages["generator"]["module"]
    assert all(torch.equal(v, ema[k]) for k, v in g.state_dict().items())


def test_use_gpu_without_gpus_fails_on_the_driver(tmp_path, ray_cluster) -> None:
    from vidgen_core.train.ray_train import train_vae_ray

    with pytest.raises(UserError, match="train_vae.use_gpu is true but no GPU is visible to Ray; set it to false"):
        train_vae_ray(_config(use_gpu=True), str(tmp_path), str(tmp_path / "m"), str(tmp_path / "ray"), "gpu",
                      None, None, dataset=_dataset(ray_cluster, 4))


def test_a_worker_bigger_than_any_node_fails_on_the_driver(tmp_path, ray_cluster) -> None:
    from vidgen_core.train.ray_train import train_vae_ray

    cfg = _config(cpus_per_worker=3.0)  # the test cluster's one node has 2
    with pytest.raises(UserError, match=r"train_vae.cpus_per_worker is 3 but the largest node of the cluster has 2 CPUs"):
        train_vae_ray(cfg, str(tmp_path), str(tmp_path / "m"), str(tmp_path / "ray"), "cpus",
                      None, None, dataset=_dataset(ray_cluster, 4))


def test_inside_a_step_of_a_local_pipeline_the_cluster_still_counts_as_local(tmp_path, ray_cluster, monkeypatch) -> None:
    """Steps get RAY_ADDRESS from the executor; without the local marker a too-big worker would only warn and hang."""
    from vidgen_core.train.ray_train import train_vae_ray
    from workflows.runtime import step_env

    env = step_env(local=True)
    assert env["RAY_ADDRESS"] and env["VIDGEN_LOCAL_RAY"] == "1"
    assert "VIDGEN_LOCAL_RAY" not in step_env(local=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UserError, match=r"cpus_per_worker is 3 .* lower train_vae.cpus_per_worker"):
        train_vae_ray(_config(cpus_per_worker=3.0), str(tmp_path), str(tmp_path / "m"), str(tmp_path / "ray"), "step",
                      None, None, dataset=_dataset(ray_cluster, 4))
