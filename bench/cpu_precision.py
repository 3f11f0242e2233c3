"""fp32 vs bf16 autocast for one VAE training step on this CPU: what ``precision: auto`` decides from.

Times a full step of the default recipe's VAE (forward, MSE, backward, Adam;
``channels_last_3d``; the default config's clip shape and a batch of 4, the
global batch of ``make run``) in fp32 and under bf16 autocast, alternating the
two so drift from other load on the machine hits both alike. Prints the
median of each and their ratio, next to whether the CPU has AMX tiles (the
test ``precision: auto`` uses).

oneDNN can be capped to an older CPU's instruction set to see what bf16 costs
there, e.g. ``ONEDNN_MAX_CPU_ISA=AVX2`` (see oneDNN's CPU dispatcher control). The
cap does not change what ``precision: auto`` picks: that reads the hardware.

    .venv/bin/python bench/cpu_precision.py [--threads 2] [--steps 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from vidgen_core.config import PipelineConfig
from vidgen_core.models.vae import VideoVAE
from vidgen_core.train.precision import Numerics, cpu_has_native_bf16


def _time_steps(model: VideoVAE, opt: torch.optim.Optimizer, clips: torch.Tensor, numerics: Numerics,
                steps: int) -> list[float]:
    """Seconds per training step over ``steps`` steps; clips (B, 3, T, H, W) in [-1, 1]."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with numerics.autocast():
            recon = model(clips).recon
        loss = (recon.float() - clips).square().mean()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as make run's 2 cores)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round and precision")
    parser.add_argument("--rounds", type=int, default=2, help="fp32/bf16 rounds, alternating")
    parser.add_argument("--batch", type=int, default=4, help="clips per step (default 4: make run's global batch)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = PipelineConfig()
    # The trainer's own numerics, both forced: layout and autocast exactly as fit_vae applies them.
    contenders = {name: Numerics(torch.device("cpu"), dtype, channels_last=True)
                  for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    model = contenders["fp32"].prepare(VideoVAE(cfg.vae))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    shape = (args.batch, 3, cfg.ingest.clip_len, cfg.ingest.size, cfg.ingest.size)
    clips = contenders["fp32"].to_input(torch.rand(shape) * 2 - 1)

    medians: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, numerics in contenders.items():
            _time_steps(model, opt, clips, numerics, 3)  # warm-up: oneDNN builds its kernels per shape and dtype
            medians[name].append(statistics.median(_time_steps(model, opt, clips, numerics, args.steps)))
    fp32_ms = 1000 * statistics.median(medians["fp32"])
    bf16_ms = 1000 * statistics.median(medians["bf16"])
    amx = cpu_has_native_bf16()
    print(json.dumps({
        "clip_shape": list(shape), "threads": args.threads,
        "amx": amx, "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "(native)"),
        "fp32_ms_per_step": round(fp32_ms, 1), "bf16_ms_per_step": round(bf16_ms, 1),
        "bf16_over_fp32_time": round(bf16_ms / fp32_ms, 2),
        "precision_auto_picks_on_this_cpu": "bf16" if amx else "fp32",
    }))


if __name__ == "__main__":
    main()
