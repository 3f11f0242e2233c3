"""Which clip embedding? Probe accuracy and same-class retrieval of embedding variants on trained VAEs.

The variants are transforms of the VAE posterior mean ``z (N, Cz, T', H', W')``;
each is scored the way the ``train_probe`` step scores the shipped one
(vidgen_core/uses/probe.py: linear probe on the train split, test accuracy;
test clips retrieving train clips by cosine: recall@1/@5 and mAP), raw and
centred on the mean of the first 256 train clips. Give several VAEs of the
same recipe: training is not bit-reproducible, and a choice should hold on
each of them.

    .venv/bin/python bench/embedding_variants.py --shards WORK/steps/ingest-*/shards \\
        --vae WORK_A/steps/train_vae-*/model --vae WORK_B/steps/train_vae-*/model

Results: bench/RESULTS.md, "Probe and retrieval".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from vidgen_core.config import ProbeConfig
from vidgen_core.models.io import load_model
from vidgen_core.models.vae import frames_to_video
from vidgen_core.uses import probe as P
from vidgen_core.uses.features import center_rows, log_spectrum


@torch.no_grad()
def posterior_means(vae: torch.nn.Module, frames: np.ndarray, batch: int = 32) -> torch.Tensor:
    """uint8 ``(N, T, H, W, 3)`` -> float ``(N, Cz, T', H', W')``."""
    return torch.cat([vae.encode(frames_to_video(frames[i : i + batch], "cpu")).mean for i in range(0, len(frames), batch)]).float()


def spectrum(z: torch.Tensor, power: float | None = 0.5, channel_norm: bool = False, time_freqs: bool = False) -> np.ndarray:
    """Amplitude spectrum variants: ``power`` None = log1p; unit rows ``(N, D)``."""
    centred = z - z.mean(dim=(-2, -1), keepdim=True)
    if time_freqs:
        amp = torch.fft.rfftn(centred, dim=(-3, -2, -1)).abs()
    else:
        amp = torch.fft.rfft2(centred).abs().mean(dim=2)
    amp = torch.log1p(amp) if power is None else amp.pow(power)
    if channel_norm:
        amp = amp / amp.flatten(2).norm(dim=2).view(*amp.shape[:2], *([1] * (amp.dim() - 2))).clamp_min(1e-12)
    flat = amp.flatten(1)
    return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()


VARIANTS: dict[str, Callable[[torch.Tensor], np.ndarray]] = {
    "flattened latent": lambda z: z.flatten(1).numpy(),
    "sqrt spectrum": lambda z: spectrum(z, 0.5),
    "spectrum (p = 1)": lambda z: spectrum(z, 1.0),
    "spectrum^0.25": lambda z: spectrum(z, 0.25),
    "3-D sqrt spectrum": lambda z: spectrum(z, 0.5, time_freqs=True),
    "log1p spectrum": lambda z: spectrum(z, None),
    "log1p, per-channel norm": lambda z: spectrum(z, None, channel_norm=True),
    "shipped (features.log_spectrum)": lambda z: log_spectrum(z).numpy(),
}


def score(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray, classes: int) -> dict[str, float]:
    """Probe test accuracy and retrieval figures of one feature space."""
    probe = P.fit_probe(train, train_y, classes, ProbeConfig())
    accuracy = float((P.predict_proba(probe, test).argmax(1) == test_y).mean())
    return {"accuracy": accuracy, **P.retrieval_metrics(test, test_y, train, train_y)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", required=True, help="an ingest step's shard folder")
    parser.add_argument("--vae", action="append", required=True, help="a VAE model dir (repeatable)")
    args = parser.parse_args()
    train_x, train_y, _ = P.load_split(args.shards, "train", 4096)
    test_x, test_y, _ = P.load_split(args.shards, "test", 4096)
    classes = int(max(train_y.max(), test_y.max())) + 1
    print(f"train clips {len(train_x)}, test clips {len(test_x)}, classes {classes}")
    for vae_dir in args.vae:
        vae, _ = load_model(vae_dir)
        z_train, z_test = posterior_means(vae, train_x), posterior_means(vae, test_x)
        for name, variant in VARIANTS.items():
            train, test = variant(z_train), variant(z_test)
            center = train[:256].mean(axis=0)
            for how, (a, b) in {"raw": (train, test), "centred": (center_rows(train, center), center_rows(test, center))}.items():
                m = score(a, train_y, b, test_y, classes)
                print(f"{vae_dir}  {name:32s} {how:8s} acc {m['accuracy']:.3f}  R@1 {m['recall_at_1']:.3f}  "
                      f"R@5 {m['recall_at_5']:.3f}  mAP {m['map']:.3f}", flush=True)


if __name__ == "__main__":
    main()
