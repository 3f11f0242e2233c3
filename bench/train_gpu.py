"""GPU training throughput: VAE and latent-GAN clips/s and achieved TFLOP/s vs a bf16 matmul.

Runs the same framework-free ``fit_vae`` / ``fit_gan`` as the pipeline (bf16
autocast, channels_last_3d, fused Adam on CUDA; ``--compile`` for
torch.compile) on random uint8 clips already on the device, so it measures
the model step, not data loading. FLOPs of one training step are counted with
``torch.utils.flop_counter`` on the real step; the reference is a large bf16
matmul timed in the same process. Imports torch/numpy and
``vidgen_core.models`` / ``vidgen_core.train`` only (no Ray, MLflow, PyAV,
pydantic): it runs on a bare CUDA box.

    python bench/train_gpu.py                      # CUDA, 16x128x128 clips, VAE in both layouts
    python bench/train_gpu.py --compile
    python bench/train_gpu.py --device cpu --tiny  # smoke run anywhere

Prints one JSON line per measurement and one summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vidgen_core.models.gan import LatentDiscriminator, build_generator  # noqa: E402
from vidgen_core.models.vae import VideoVAE, frames_to_video  # noqa: E402
from vidgen_core.train.allocator import keep_freed_memory  # noqa: E402
from vidgen_core.train.fit_gan import encode_latents, fit_gan  # noqa: E402
from vidgen_core.train.fit_vae import fit_vae, vae_generator_step  # noqa: E402
from vidgen_core.train.gan_steps import discriminator_step, generator_step  # noqa: E402
from vidgen_core.train.loop import batch_noise  # noqa: E402
from vidgen_core.train.optim import Optim  # noqa: E402
from vidgen_core.train.precision import resolve_numerics  # noqa: E402

# Every field of vidgen_core.config.VAETrainConfig (a superset of TrainConfig) / VAEConfig / GANConfig (a unit test checks
# the lists stay complete), as plain namespaces: pydantic need not be installed here.
TRAIN = dict(
    steps=40, batch_size=8, lr=1e-4, lr_d=None, kl_weight=1e-4, recon_loss="l2", num_workers=1, cpus_per_worker=1.0,
    use_gpu=True, checkpoint_every=10**9, log_every=10, seed=0, gpus_per_worker=1.0, resources_per_worker={},
    grad_accum=1, grad_clip=1.0, lr_schedule="constant", warmup_steps=0, min_lr_ratio=0.1, precision="auto",
    memory_format="auto", compile=False, checkpoint_keep=2, max_failures=0, sample_every=0,
    data_order="streaming", prefetch_batches=2, epoch_cache_mb=1024, adv_weight=0.0, adv_start_step=0,
    adv_disc_channels=32, augment=[], shuffle_buffer=0, torch_threads=None, worker_niceness=None,
    keep_freed_memory=True,
)
VAE = dict(base_channels=64, channel_mult=[1, 2, 4, 4], latent_channels=8, temporal_downsample=4,
           spatial_downsample=8, num_res_blocks=1, causal=False, patch_size=1, colour_weight=2.5, norm="none")
GAN = dict(space="latent", noise_dim=128, base_channels=64, conditional=False, spectral_norm=True, r1_gamma=0.0, mode_seeking=1.0, class_loss=1.0,
           pixel_d_weight=0.0, pixel_d_batch=8, pixel_d_real="decoded", pixel_d_decode="clip",
           pixel_d_grid=8, pixel_d_channels=32, pixel_d_augment=["rgb_permute", "hflip"], generator_channels=None,  # this bench times the latent D alone
           minibatch_std=0, generator_norm="group",
           ema_decay=0.999, guard=True, divergence_logit_max=100.0, rollback_lr_factor=0.5, max_rollbacks=3)
TINY = dict(clip=(8, 32, 32), vae=dict(base_channels=8, channel_mult=[1, 2], latent_channels=4,
            temporal_downsample=2, spatial_downsample=4), gan=dict(noise_dim=16, base_channels=8),
            batch=2, window=2, windows=3, matmul=1024)
FULL = dict(clip=(16, 128, 128), batch=8, window=10, windows=4, matmul=8192)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, n: int, dtype: torch.dtype, iters: int = 20) -> float:
    """Achieved TFLOP/s of an n×n @ n×n matmul (2n³ FLOPs) in ``dtype``."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


def clips_on_device(n: int, clip: tuple[int, int, int], device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    t, h, w = clip
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(0, 256, size=(n, t, h, w, 3), dtype=np.uint8)).to(device) for _ in range(4)]


def cycle(items: list[Any]):
    while True:
        yield from items


def steady(windows: list[tuple[int, dict[str, float]]]) -> float:
    """Mean step time over every logged window but the first (warm-up, cuDNN autotune, compilation)."""
    rest = [m["step_time_s"] for _, m in windows[1:]]
    return sum(rest) / len(rest)


def vae_step_flops(vae_cfg: Any, train_cfg: Any, batch: torch.Tensor, device: torch.device) -> float:
    """FLOPs of one VAE training step (forward + backward) on ``batch``, counted on a fresh model."""
    numerics = resolve_numerics(train_cfg, device)
    model = numerics.prepare(VideoVAE(vae_cfg))
    optim = Optim(model.parameters(), train_cfg.lr, train_cfg)
    x = numerics.to_input(frames_to_video(batch, device))
    noise = batch_noise(model.latent_dims(*x.shape[2:]), x.shape[0], 0, 1, 0, 1, device)
    with FlopCounterMode(display=False) as fc:
        vae_generator_step(model, optim, [x], [noise], train_cfg, numerics)
    return float(fc.get_total_flops())


def gan_step_flops(gan_cfg: Any, train_cfg: Any, vae: torch.nn.Module, batch: torch.Tensor, device: torch.device) -> float:
    """FLOPs of one GAN step: frozen encoder forward + D step + G step."""
    numerics = resolve_numerics(train_cfg, device)
    with FlopCounterMode(display=False) as fc:
        real = encode_latents(vae, batch, device, numerics)
        g = numerics.prepare(build_generator(gan_cfg, tuple(real.shape[1:]), 0))
        d = numerics.prepare(LatentDiscriminator(gan_cfg, tuple(real.shape[1:]), 0))
        opt_g, opt_d = Optim(g.parameters(), 1e-4, train_cfg), Optim(d.parameters(), 1e-4, train_cfg)
        discriminator_step(g, d, opt_d, [numerics.to_input(real)], [None], numerics)
        generator_step(g, d, opt_g, real.shape[0], [None], numerics)
    return float(fc.get_total_flops())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny shapes and few steps (CPU smoke run)")
    p.add_argument("--compile", action="store_true", help="torch.compile the trained models")
    p.add_argument("--batch", type=int, default=None, help="clips per step (default 8; tiny 2)")
    # CUDA's GroupNorm kernel reads NCDHW, so channels_last_3d trades faster convs against a
    # layout copy around every norm: measure both (the VAE is GroupNorm-heavy).
    p.add_argument("--memory-format", choices=["both", "auto", "channels_last_3d", "contiguous"], default="both",
                   help="VAE layout(s) to time (the GAN uses auto)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU; use --device cpu --tiny")
    torch.backends.cudnn.benchmark = True
    shape = TINY if args.tiny else FULL
    batch = args.batch or shape["batch"]
    window, windows = shape["window"], shape["windows"]
    steps = window * windows
    train = SimpleNamespace(**{**TRAIN, "steps": steps, "batch_size": batch, "log_every": window,
                               "compile": args.compile, "use_gpu": device.type == "cuda"})
    vae_cfg = SimpleNamespace(**{**VAE, **shape.get("vae", {})})
    gan_cfg = SimpleNamespace(**{**GAN, **shape.get("gan", {})})
    numerics = resolve_numerics(train, device)
    if train.keep_freed_memory:  # as vidgen's training workers do
        keep_freed_memory()
    clip = shape["clip"]
    info = {"bench": "train_gpu", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "clip": list(clip), "batch": batch, "dtype": str(numerics.dtype).replace("torch.", ""),
            "compile": args.compile, "threads": torch.get_num_threads()}

    peak = matmul_tflops(device, shape["matmul"], numerics.dtype)
    emit({**info, "what": "matmul", "n": shape["matmul"], "tflops": round(peak, 3)})

    data = clips_on_device(batch, clip, device)
    results: dict[str, Any] = {"matmul_tflops": peak}
    layouts = ["channels_last_3d", "contiguous"] if args.memory_format == "both" else [args.memory_format]
    runs = [("vae", fmt) for fmt in layouts] + [("gan", "auto")]
    for what, fmt in runs:
        logs: list[tuple[int, dict[str, float]]] = []
        run_cfg = SimpleNamespace(**{**vars(train), "memory_format": fmt})
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if what == "vae":
            flops = vae_step_flops(vae_cfg, run_cfg, data[0], device)
            fit_vae(vae_cfg, run_cfg, cycle(data), lambda s, m: logs.append((s, m)), device=device)
        else:
            vae = VideoVAE(vae_cfg).to(device).eval().requires_grad_(False)
            flops = gan_step_flops(gan_cfg, run_cfg, vae, data[0], device)
            fit_gan(gan_cfg, run_cfg, vae, cycle([(d, None) for d in data]), 0, lambda s, m: logs.append((s, m)), device=device)
        step_time = steady(logs)
        tflops = flops / step_time / 1e12
        rec = {
            **info, "what": what, "memory_format": fmt,
            "channels_last_3d": resolve_numerics(run_cfg, device).channels_last, "steps": steps,
            "step_time_s": round(step_time, 5),
            "clips_per_s": round(batch / step_time, 2), "gflop_per_step": round(flops / 1e9, 2),
            "tflops": round(tflops, 5), "fraction_of_matmul": round(tflops / peak, 4),
            "final_loss": logs[-1][1]["loss"],
        }
        if device.type == "cuda":
            rec["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        emit(rec)
        if what not in results or rec["tflops"] > results[what]["tflops"]:
            results[what] = rec  # the faster layout
    vae = results["vae"]
    print(
        f"SUMMARY train_gpu device={info['device']} clip={'x'.join(map(str, clip))} batch={batch} "
        f"matmul={peak:.2f} TFLOP/s | VAE ({vae['memory_format']}) {vae['clips_per_s']} clips/s "
        f"{vae['tflops']:.3f} TFLOP/s = {vae['fraction_of_matmul']:.1%} of matmul (goal 40% on 16x128x128 GPU) | "
        f"GAN {results['gan']['clips_per_s']} clips/s {results['gan']['tflops']:.3f} TFLOP/s "
        f"= {results['gan']['fraction_of_matmul']:.1%}",
        flush=True,
    )
    return results


if __name__ == "__main__":
    main()
