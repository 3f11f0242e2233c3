"""`vidgen plan-memory` and its estimator; the GPU training bench's CPU smoke run."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vidgen_core.config import GANConfig, PipelineConfig, VAEConfig, VAETrainConfig
from vidgen_core.models.vae import VideoVAE
from vidgen_core.train.memory_plan import plan_memory, profile_step

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_gpu.py"


def _cfg(adv_weight: float = 0.0, **train: object) -> PipelineConfig:
    vae_train = {**train, "adv_weight": adv_weight}  # a VAE-only setting: train_gan refuses it
    return PipelineConfig.model_validate(
        {"ingest": {"clip_len": 8, "size": 32}, "vae": {"base_channels": 8}, "train_vae": vae_train, "train_gan": train}
    )


def test_meta_profile_counts_what_a_real_run_saves() -> None:
    """The meta-device count equals the saved-tensor bytes of the same forward on real CPU tensors."""
    counts = []
    for device in ("meta", "cpu"):
        with torch.device(device):
            vae, x = VideoVAE(VAEConfig(base_channels=8)), torch.zeros(1, 3, 8, 32, 32)
        prof = profile_step([vae], lambda: vae(x).recon.pow(2).mean(), torch.float32, device)
        counts.append((prof.saved_bytes, prof.largest_bytes, prof.flops))
    assert counts[0] == counts[1] and counts[0][0] > 0 and counts[0][2] > 0


def test_plan_scales_with_batch_precision_and_gpu_memory() -> None:
    fp32 = {e.job: e for e in plan_memory(_cfg(precision="fp32", batch_size=4), gpu_memory_gb=16)}
    bf16 = {e.job: e for e in plan_memory(_cfg(precision="bf16", batch_size=4), gpu_memory_gb=16)}
    big = {e.job: e for e in plan_memory(_cfg(precision="bf16", batch_size=4), gpu_memory_gb=80)}
    for job in ("train_vae", "train_gan"):
        assert bf16[job].bytes_per_clip < fp32[job].bytes_per_clip  # autocast keeps bf16 conv inputs
        assert big[job].suggested_batch_size > bf16[job].suggested_batch_size > 4
        est = bf16[job]
        assert est.peak_bytes == est.static_bytes + 4 * est.bytes_per_clip + int(1.5 * 1024**3)
    adv = {e.job: e for e in plan_memory(_cfg(adv_weight=0.1, batch_size=4))}
    assert adv["train_vae"].params > bf16["train_vae"].params  # the patch discriminator counts


def test_cli_plan_memory(tmp_path) -> None:
    from workflows.cli import main

    runner = CliRunner()
    out = runner.invoke(main, ["plan-memory", "--set", "ingest.size=32", "--set", "vae.base_channels=8",
                               "--gpu-memory-gb", "24", "--json"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.strip().splitlines()]
    assert [r["job"] for r in rows] == ["train_vae", "train_gan"] and all(r["suggested_batch_size"] > 0 for r in rows)
    bad = runner.invoke(main, ["plan-memory", "--set", "ingest.size=30"])
    assert bad.exit_code == 2 and "must divide" in bad.output


def test_bench_config_namespaces_cover_every_field() -> None:
    """bench/train_gpu.py spells configs as plain dicts (no pydantic on a bare GPU box): keep them complete."""
    bench = runpy.run_path(str(BENCH), run_name="bench_train_gpu")
    assert set(bench["TRAIN"]) == set(VAETrainConfig.model_fields)  # a superset of train_gan's TrainConfig
    assert set(bench["VAE"]) == set(VAEConfig.model_fields)
    assert set(bench["GAN"]) == set(GANConfig.model_fields)


_BLOCKED = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ray", "mlflow", "av", "pydantic", "yaml"}:
            raise ImportError(f"{name} is not available on a bare GPU box")
sys.meta_path.insert(0, Block())
sys.argv = ["train_gpu.py", "--device", "cpu", "--tiny"]
runpy.run_path(%r, run_name="__main__")
"""


def test_gpu_bench_runs_on_cpu_without_ray_mlflow_av_or_pydantic() -> None:
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _BLOCKED % str(BENCH)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    records = [json.loads(line) for line in lines[:-1]]
    assert [(r["what"], r.get("memory_format")) for r in records] == [
        ("matmul", None), ("vae", "channels_last_3d"), ("vae", "contiguous"), ("gan", "auto")]
    assert [r.get("channels_last_3d") for r in records[1:]] == [True, False, True]  # auto: channels_last_3d on CPU too
    assert lines[-1].startswith("SUMMARY train_gpu device=cpu")
    assert all(r["clips_per_s"] > 0 and r["gflop_per_step"] > 0 for r in records[1:])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_plan_is_close_to_measured_peak_on_cuda() -> None:
    cfg = _cfg(batch_size=4)
    est = plan_memory(cfg)[0]
    torch.cuda.reset_peak_memory_stats()
    from vidgen_core.train.fit_vae import fit_vae
    import numpy as np

    clips = torch.from_numpy(np.zeros((4, 8, 32, 32, 3), dtype=np.uint8)).cuda()
    fit_vae(cfg.vae, cfg.train_vae.model_copy(update={"steps": 2}), iter([clips] * 2), device="cuda")
    measured = torch.cuda.max_memory_allocated()
    predicted = est.peak_bytes - int(1.5 * 1024**3)  # max_memory_allocated excludes the CUDA context
    assert 0.5 * measured < predicted < 2.0 * measured


def test_gan_plan_counts_the_modules_training_builds() -> None:
    """plan-memory's train_gan params are those of the G and D (latent + pixel) that fit_gan builds,
    so a pixel D profiled at another grid or width than the trained one fails here."""
    from vidgen_core.models.gan import build_discriminator, build_generator
    from vidgen_core.train.fit_gan import pixel_d_shape
    from vidgen_core.train.memory_plan import plan_gan

    for pixel_d in ({}, {"pixel_d_channels": 8, "pixel_d_grid": 16}, {"generator_channels": 24}):
        cfg = _cfg().model_copy(update={"gan": GANConfig(**pixel_d)})
        vae = VideoVAE(cfg.vae)
        shape = vae.latent_shape(cfg.ingest.clip_len, cfg.ingest.size)
        g = build_generator(cfg.gan, shape, 0)
        d = build_discriminator(cfg.gan, shape, 0, pixel_d_shape(cfg.gan, vae, shape))
        assert plan_gan(cfg).params == sum(p.numel() for m in (g, d) for p in m.parameters()), pixel_d
