"""Ray Train adapter on a real local Ray cluster, with real MLflow (SQLite).

Tiny models, a handful of steps: the point is the wiring (DDP, dataset shards,
checkpoints + resume, rank-0 side effects), not learning.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vidgen_core.config import PipelineConfig, TrainConfig
from vidgen_core.errors import UserError

pytestmark = pytest.mark.integration

# Ray Train's controller polls its workers every 2 s by default, which adds seconds
# to each of these tiny runs. Set at collection, i.e. before any test starts Ray,
# so the local cluster's processes inherit it.

CLIP_LEN, SIZE, NUM_CLASSES = 8, 16, 3


def _config(**train: object) -> PipelineConfig:
    base = {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "num_workers": 1, "cpus_per_worker": 0.5}
    base.update(train)
    return PipelineConfig.model_validate(
        {
            "ingest": {"clip_len": CLIP_LEN, "size": SIZE},
            "vae": {"base_channels": 8},
            "gan": {"base_channels": 8, "noise_dim": 8, "r1_gamma": 1.0},  # R1 (double backward) under DDP
            "train_vae": base,
            "train_gan": {**{k: v for k, v in base.items() if k in TrainConfig.model_fields}, "lr": 2e-4},  # no VAE-only keys
        }
    )


def _dataset(ray, n: int = 8):
    rng = np.random.default_rng(0)
    rows = [
        {"frames": rng.integers(0, 256, size=(CLIP_LEN, SIZE, SIZE, 3), dtype=np.uint8), "label": i % NUM_CLASSES}
        for i in range(n)
    ]
    return ray.data.from_items(rows)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, ray_cluster):
    """Shard dir with a manifest, an MLflow SQLite store and a run in it."""
    import mlflow

    from vidgen_core.data.schema import SCHEMA_VERSION, write_manifest

    root = tmp_path_factory.mktemp("raytrain")
    shards = root / "shards"
    shards.mkdir()
    write_manifest(
        str(shards),
        {"schema_version": SCHEMA_VERSION, "label_names": ["circle", "square", "triangle"], "shards": []},
    )
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("test", artifact_location=(root / "artifacts").as_uri())
    return {"root": root, "shards": str(shards), "uri": uri, "client": client, "exp": exp}


def _new_run(ws) -> str:
    return ws["client"].create_run(ws["exp"]).info.run_id


def _artifacts(ws, run_id: str, folder: str = "samples") -> list[str]:
    return [a.path for a in ws["client"].list_artifacts(run_id, folder)]


@pytest.fixture(scope="module")
def vae_run(workspace, ray_cluster):
    """One VAE run of 4 steps, logged to MLflow (shared by the resume and GAN tests)."""
    from vidgen_core.train.ray_train import train_vae_ray

    run_id = _new_run(workspace)
    out = train_vae_ray(
        _config(sample_every=2), workspace["shards"], str(workspace["root"] / "vae"), str(workspace["root"] / "ray"),
        "vae-run", workspace["uri"], run_id, dataset=_dataset(ray_cluster),
    )
    return out, run_id


def test_train_vae_writes_model_metrics_and_video(workspace, vae_run) -> None:
    out, run_id = vae_run
    model_dir = Path(out["model_dir"])
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "weights.safetensors"]
    doc = json.loads((model_dir / "config.json").read_text())
    assert doc["kind"] == "vae" and doc["extra"]["clip_len"] == CLIP_LEN and doc["extra"]["size"] == SIZE
    assert out["steps"] == 4 and out["start_step"] == 0 and math.isfinite(out["final_loss"])
    assert out["checkpoint"].endswith("checkpoint_00000004")
    history = workspace["client"].get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    # No shards on disk here (the dataset is handed in): the previews score the first training
    # clips and are named so; lossless PNG strips every sample_every steps and at the end.
    assert _artifacts(workspace, run_id, "previews") == [
        "previews/step_00000002", "previews/step_00000004", "previews/vae_recon_train.png",
    ]
    assert "val_psnr" not in workspace["client"].get_run(run_id).data.metrics  # never scored on training clips

    from vidgen_core.models.io import load_model

    vae, _ = load_model(model_dir)
    assert vae.latent_shape(CLIP_LEN, SIZE) == tuple(doc["extra"]["latent_shape"])


def test_train_vae_resumes_from_checkpoint_with_ddp(workspace, vae_run, ray_cluster) -> None:
    """Same run name, more steps: continues from step 4, now on two DDP workers (gloo), with gradient
    accumulation and the patch discriminator switched on at step 5 (a fresh one: the checkpoint has none)."""
    from vidgen_core.train.ray_train import train_vae_ray

    cfg = _config(steps=6, num_workers=2, grad_accum=2, adv_weight=0.1, adv_start_step=4, adv_disc_channels=8,
                  worker_niceness=3)
    out = train_vae_ray(
        cfg, workspace["shards"], str(workspace["root"] / "vae6"),
        str(workspace["root"] / "ray"), "vae-run", None, None, dataset=_dataset(ray_cluster),
    )
    assert out["start_step"] == 4 and out["steps"] == 6 and math.isfinite(out["final_loss"])
    assert out["niceness"] == 3  # the ranks' runtime env carried the configured nice value
    assert out["keeps_freed_memory"] is True  # train_vae.keep_freed_memory (default on) reached the rank's malloc
    assert out["checkpoint"].endswith("checkpoint_00000006")
    assert (Path(out["model_dir"]) / "weights.safetensors").is_file()
    assert math.isfinite(out["metrics"]["loss_d"]) and math.isfinite(out["metrics"]["adv_g"])
    from vidgen_core.train.checkpoint import load_state

    assert set(load_state(out["checkpoint"]).models) == {"vae", "vae_disc"}


def test_rank0_tracker_records_events(workspace) -> None:
    from vidgen_core.train.ray_driver import JobArgs
    from vidgen_core.train.ray_tracker import Rank0Tracker

    run_id = _new_run(workspace)
    tracker = Rank0Tracker(JobArgs(out_dir="unused", tracking_uri=workspace["uri"], mlflow_run_id=run_id), 0, 1)
    tracker.on_event(7, "guard_rollback", {"from_step": 7, "to_step": 4, "rollbacks": 1, "lr_g": 1e-4})
    run = workspace["client"].get_run(run_id)
    assert json.loads(run.data.tags["vidgen.event.guard_rollback.1"])["to_step"] == 4
    assert run.data.metrics["event_guard_rollback"] == 1.0
    assert Rank0Tracker(JobArgs(out_dir="x", mlflow_run_id=run_id), 1, 2).enabled is False  # rank 1: no side effects


def test_train_gan_on_frozen_vae(workspace, vae_run, ray_cluster) -> None:
    from vidgen_core.models.io import load_model
    from vidgen_core.train.ray_train import train_gan_ray

    run_id = _new_run(workspace)
    out = train_gan_ray(
        _config(steps=2, num_workers=2), workspace["shards"], vae_run[0]["model_dir"], str(workspace["root"] / "gan"),
        str(workspace["root"] / "ray"), "gan-run", workspace["uri"], run_id, dataset=_dataset(ray_cluster),
    )
    assert out["steps"] == 2 and math.isfinite(out["final_loss"]) and out["latent_scale"] > 0
    generator, doc = load_model(out["model_dir"])
    assert doc["kind"] == "gan" and doc["extra"]["num_classes"] == NUM_CLASSES and generator.conditional
    assert doc["extra"]["vae_dir"] == vae_run[0]["model_dir"]
    assert "loss_d" in workspace["client"].get_run(run_id).data.metrics
    assert _artifacts(workspace, run_id) == ["samples/gan_samples.mp4"]


def test_batch_larger_than_split_fails_on_the_driver(tmp_path) -> None:
    from vidgen_core.data.schema import SCHEMA_VERSION, write_manifest
    from vidgen_core.train.ray_train import train_vae_ray

    manifest = {"schema_version": SCHEMA_VERSION, "label_names": [], "shards": [], "clips_per_split": {"train": 10}}
    write_manifest(str(tmp_path), manifest)
    with pytest.raises(UserError, match="lower train_vae.batch_size"):  # before Ray is touched
        train_vae_ray(_config(batch_size=8, num_workers=2), str(tmp_path), str(tmp_path / "m"), str(tmp_path), "x", None, None)
