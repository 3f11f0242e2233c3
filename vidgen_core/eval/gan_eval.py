"""Judge-based evaluation of the GAN, each figure beside its real-vs-real floor and the VAE-prior baseline.

Three sets of ``N`` clips are scored against the real test clips (``N`` = the
number of test clips, so every set is compared at the same sample count):

* ``gan``: GAN samples, conditioned on the test clips' labels (so the class
  mix matches);
* ``real``: real *train* clips drawn at random — the floor: what a perfect
  generator of this data would score against a finite test set;
* ``prior``: the VAE decoding N(0, I) latents — the baseline a GAN must beat
  to have learned anything about the latent distribution.

Figures (each mean ± std over ``seeds`` draws): Fréchet distance and
precision/recall (k = 3) in the judge's feature space, class consistency (the
judge's accuracy on the requested / true labels), diversity ratio (same-class
pairwise pixel distance vs the test clips'), colour ratio (foreground chroma
vs the test clips'). Without a judge (unlabelled data), features come from
the VAE encoder and class consistency is not measured; ``gan_feature_space``
says which.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from vidgen_core.eval.sample_metrics import colourfulness, diversity_ratio, features, frechet_distance, precision_recall

SETS = ("gan", "real", "prior")
FIGURES = ("fd", "precision", "recall", "class_consistency", "diversity_ratio", "colour_ratio")


def score_set(
    clips: np.ndarray,
    labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    feature: nn.Module,
    judge: nn.Module | None,
    real_feats: np.ndarray | None = None,
    real_colour: float | None = None,
) -> dict[str, float]:
    """The figures of one clip set (uint8 (N, T, H, W, 3), labels (N,)) against real test clips."""
    from vidgen_core.eval.judge import predict

    real_feats = features(feature, real) if real_feats is None else real_feats
    real_colour = colourfulness(real) if real_colour is None else real_colour
    precision, recall = precision_recall(real_feats, features(feature, clips), k=3)
    out = {
        "fd": frechet_distance(feature, real, clips),
        "precision": precision,
        "recall": recall,
        "diversity_ratio": diversity_ratio(clips, labels, real, real_labels),
        "colour_ratio": colourfulness(clips) / real_colour if real_colour > 0 else float("nan"),
    }
    if judge is not None:
        out["class_consistency"] = float((predict(judge, clips).argmax(axis=1) == labels).mean())
    return out


def _prior_samples(vae: nn.Module, n: int, latent_shape: tuple[int, ...], seed: int, batch_size: int) -> np.ndarray:
    from vidgen_core.eval.inference import module_device
    from vidgen_core.models.vae import video_to_frames

    g = torch.Generator().manual_seed(seed)
    z = torch.randn((n, *latent_shape), generator=g)
    with torch.no_grad():
        parts = [video_to_frames(vae.decode(z[i : i + batch_size].to(module_device(vae)))) for i in range(0, n, batch_size)]
    return np.concatenate(parts)


def evaluate_samples(
    generator: nn.Module,
    vae: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    judge: nn.Module | None,
    seeds: int = 3,
    batch_size: int = 32,
) -> dict[str, Any]:
    """All figures for the three sets, mean and std over ``seeds`` draws.

    Args:
        generator: the (EMA) latent or pixel generator (eval mode).
        vae: the frozen VAE (prior baseline; latent GAN decoding).
        train, test: (uint8 clips (N, T, H, W, 3), labels (N,)); labels -1 when unknown.
        judge: the trained :class:`~vidgen_core.models.judge.VideoJudge`, or None (unlabelled data).
    Returns:
        ``{f"{set}_{figure}": mean, f"{set}_{figure}_std": std, ...}`` plus
        ``gan_feature_space``, ``eval_seeds``, ``eval_num_samples``.
    """
    from vidgen_core.eval.inference import generate
    from vidgen_core.eval.judge import EncoderFeatures, JudgeFeatures

    real, real_labels = test
    n = len(real)
    if n < 4 or len(train[0]) < 4:
        raise ValueError(f"GAN evaluation needs at least 4 train and 4 test clips, got {len(train[0])} and {n}")
    labelled = judge is not None and bool((real_labels >= 0).all())
    feature: nn.Module = JudgeFeatures(judge) if labelled else EncoderFeatures(vae)
    judge = judge if labelled else None
    real_feats, real_colour = features(feature, real), colourfulness(real)
    z_shape = tuple(vae.latent_dims(*real.shape[1:4]))
    draws: dict[str, list[dict[str, float]]] = {s: [] for s in SETS}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        conditional = bool(getattr(generator, "conditional", False)) and labelled
        gan_labels = real_labels if conditional else np.zeros(n, dtype=np.int64)
        gan = generate(generator, vae, gan_labels if conditional else None, n, batch_size, seed=10_000 + seed)
        pick = rng.choice(len(train[0]), size=n, replace=len(train[0]) < n)
        sets = {
            "gan": (gan, real_labels if conditional else gan_labels),
            "real": (train[0][pick], train[1][pick]),
            "prior": (_prior_samples(vae, n, z_shape, 20_000 + seed, batch_size), real_labels),
        }
        for name, (clips, labels) in sets.items():
            # Unconditional samples have no class: diversity is then measured over all clips together.
            real_lab = real_labels if (name != "gan" or conditional) else np.zeros(n, dtype=np.int64)
            row = score_set(clips, labels, real, real_lab, feature, judge, real_feats, real_colour)
            if name == "real" and judge is not None:
                # The judge was trained on these train clips: its floor is its accuracy on unseen real clips.
                row["class_consistency"] = score_set(real, real_labels, real, real_labels, feature, judge,
                                                     real_feats, real_colour)["class_consistency"]
            draws[name].append(row)
    out: dict[str, Any] = {}
    for name, rows in draws.items():
        for key in rows[0]:
            values = np.array([r[key] for r in rows], dtype=np.float64)
            out[f"{name}_{key}"] = float(values.mean())
            out[f"{name}_{key}_std"] = float(values.std())
    out["gan_feature_space"] = "judge" if labelled else "vae_encoder"
    out["eval_seeds"] = seeds
    out["eval_num_samples"] = n
    return out


def evaluate_gan(gan_dir: str, vae_dir: str, shard_dir: str, cfg: Any, judge_dir: str | None) -> dict[str, Any]:
    """Load the saved GAN, VAE and judge, read train/test clips, and run :func:`evaluate_samples`.

    ``cfg`` is the EvalConfig (``max_test_clips``, ``batch_size``, ``seeds``).
    """
    from vidgen_core.data.readers import load_clips
    from vidgen_core.errors import UserError
    from vidgen_core.eval.inference import default_device
    from vidgen_core.models.io import load_model

    test = load_clips(shard_dir, "test", cfg.max_test_clips)
    train = load_clips(shard_dir, "train")
    if len(test[0]) < 4 or len(train[0]) < 4:
        raise UserError(
            f"'{shard_dir}' has {len(train[0])} train and {len(test[0])} test clips; GAN evaluation needs at least 4 "
            "of each: add videos or raise ingest.test_fraction"
        )
    device = default_device()
    generator, _ = load_model(gan_dir, device=device)
    vae, _ = load_model(vae_dir, device=device)
    judge = load_model(judge_dir, device="cpu")[0] if judge_dir else None
    return evaluate_samples(generator, vae, train, test, judge, seeds=cfg.seeds, batch_size=cfg.batch_size)
