"""Model-quality experiments on a finished ``vidgen run``: retrain one model framework-free with changed
settings and score it on the run's own test split, the way the evaluate step does.

The figures in bench/RESULTS.md's recipe searches (VAE steps curve, judge
variants, GAN variants) come from these loops. Each reads the newest
``ingest``, ``train_vae`` and ``train_judge`` outputs under ``WORKDIR/steps``.

    # the VAE recipe at 8000 steps, test PSNR/SSIM/colour every 1000 steps
    python bench/quality.py vae -w vidgen-work --set '{"steps": 8000}' --every 1000
    # ... and kept as a work dir of its own, so a GAN can be trained on it (below)
    python bench/quality.py vae -w vidgen-work --set '{"steps": 8000}' --save-to vae8000-work
    python bench/quality.py gan -w vae8000-work
    # the judge at 1200 steps: test accuracy and confusion matrix
    python bench/quality.py judge -w vidgen-work --set '{"steps": 1200}'
    # a GAN variant against the run's VAE and judge; --best-of K also scores
    # discriminator rejection (K candidates per label, kept by D's class head)
    python bench/quality.py gan -w vidgen-work --set '{"gan": {"class_loss": 2.0}}' --best-of 4 16

Single process, ``--threads`` torch threads (default 1: two experiments share 2 cores).
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidgen_core.config import PipelineConfig, load_config  # noqa: E402
from vidgen_core.data.readers import load_clips  # noqa: E402
from vidgen_core.errors import UserError  # noqa: E402

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "workflows" / "configs" / "default.yaml"


def newest(workdir: Path, step: str, sub: str) -> str:
    """``WORKDIR/steps/<step>-<fingerprint>/<sub>`` of the newest finished run of ``step``."""
    found = sorted((p for p in (workdir / "steps").glob(f"{step}-*/{sub}") if p.exists()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"no finished {step} under {workdir}/steps: run `vidgen run -w {workdir}` first")
    return str(found[-1])


def emit(**fields: Any) -> None:
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in fields.items()}), flush=True)


def save_as_workdir(vae: torch.nn.Module, cfg: PipelineConfig, source: Path, dest: Path, steps: int) -> Path:
    """Write ``vae`` as ``dest``'s newest ``train_vae`` model next to links to ``source``'s ingest and judge
    outputs, so ``quality.py gan -w dest`` trains and scores a GAN on this VAE with the same clips and judge.

    Returns the model directory. The VAE is saved in the contiguous layout (what ``vidgen`` loads).
    """
    from vidgen_core.models.io import save_model

    (dest / "steps").mkdir(parents=True, exist_ok=True)
    for step, sub in (("ingest", "shards"), ("train_judge", "judge")):
        step_dir = Path(newest(source, step, sub)).parent.resolve()
        link = dest / "steps" / step_dir.name
        if not link.exists():
            link.symlink_to(step_dir, target_is_directory=True)
    clip_len, size = cfg.ingest.clip_len, cfg.ingest.size
    extra = {"clip_len": clip_len, "size": size, "latent_shape": list(vae.latent_shape(clip_len, size)), "steps": steps}
    model = vae.to(memory_format=torch.contiguous_format)
    return save_model(model, "vae", cfg.vae.model_dump(), dest / "steps" / f"train_vae-bench{steps}" / "model", extra=extra)


def run_vae(cfg: PipelineConfig, train: tuple, test: tuple, over: dict, every: int,
            source: Path | None = None, save_to: Path | None = None) -> None:
    """The recipe's VAE, one worker (global batch = batch_size x num_workers), test figures every ``every`` steps.

    At the end it also prints the GAN's colour ceiling on this decoder: the colourfulness of its
    reconstructions of the *train* clips over the test clips' (what a GAN that matched the real train
    latents exactly would score), and with ``save_to`` keeps the VAE as a work dir (:func:`save_as_workdir`).
    """
    from vidgen_core.eval.evaluate import vae_figures
    from vidgen_core.eval.inference import reconstruct
    from vidgen_core.eval.sample_metrics import colourfulness
    from vidgen_core.models.vae import VideoVAE
    from vidgen_core.train.fit_vae import fit_vae
    from vidgen_core.train.precision import resolve_numerics

    batch = cfg.train_vae.batch_size * cfg.train_vae.num_workers
    tcfg = cfg.train_vae.model_copy(update={"batch_size": batch, "num_workers": 1, "checkpoint_every": every,
                                            "sample_every": 0, **over})

    def batches():  # shuffled epochs over the train split
        g = np.random.default_rng(tcfg.seed)
        while True:
            perm = g.permutation(len(train[0]))
            for i in range(0, len(perm) - batch + 1, batch):
                yield train[0][perm[i : i + batch]]

    torch.manual_seed(tcfg.seed)  # as the trainer does: the seed fixes the initial weights too
    # Prepared as the trainer prepares it, so memory_format in --set takes effect.
    model, t0 = resolve_numerics(tcfg, "cpu").prepare(VideoVAE(cfg.vae)), time.time()

    def on_checkpoint(step: int, _state_fn: Any) -> None:
        model.eval()
        f = vae_figures(reconstruct(model, test[0], 16), test[0], 1)
        model.train()
        emit(step=step, seconds=time.time() - t0, psnr=f["vae_psnr"], ssim=f["vae_ssim"], colour=f["vae_colour_ratio"])

    fit_vae(cfg.vae, tcfg, batches(), model=model, on_checkpoint=on_checkpoint)
    model.eval()
    test_colour = colourfulness(test[0])
    emit(step=tcfg.steps, colour_ceiling=colourfulness(reconstruct(model, train[0], 16)) / test_colour,
         train_over_test_colour=colourfulness(train[0]) / test_colour)
    if save_to is not None and source is not None:
        emit(saved=str(save_as_workdir(model, cfg, source, save_to, tcfg.steps)))


def run_judge(cfg: PipelineConfig, train: tuple, test: tuple, over: dict, num_classes: int) -> None:
    from vidgen_core.eval.judge import predict, train_judge

    t0 = time.time()
    result = train_judge(*train, num_classes, cfg.judge.model_copy(update=over), test=test)
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    for true, said in zip(test[1], predict(result.judge, test[0]).argmax(1)):
        confusion[true, said] += 1
    emit(settings=over, seconds=time.time() - t0, train_accuracy=result.train_accuracy,
         test_accuracy=result.test_accuracy, confusion=confusion.tolist())


def _pixel_scores(discriminator: Any, decode: Any, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) the pixel D's log-probability of label y and (N,) its real/fake logit, each averaged
    over every latent time slice. ``decode(z, t)`` renders slice t's frames as the pixel D saw them
    in training (``fit_gan.pixel_view``)."""
    log_p, real = torch.zeros(len(z)), torch.zeros(len(z))
    for t in range(z.shape[2]):
        for i in range(0, len(z), 32):
            px = decode(z[i : i + 32], t)
            logit, logits = discriminator.pixel(px, y[i : i + 32], with_class=True)
            log_p[i : i + 32] += logits.log_softmax(1).gather(1, y[i : i + 32, None])[:, 0] / z.shape[2]
            real[i : i + 32] += logit.float().reshape(-1) / z.shape[2]
    return log_p, real


@torch.no_grad()
def best_of(generator: Any, discriminator: Any, vae: Any, labels: np.ndarray, k: int, seed: int, head: str = "latent",
            gan_cfg: Any = None) -> np.ndarray:
    """Discriminator rejection: k candidates per label, keep the one D's class head finds most likely
    that label. ``head``: "latent" (the latent D's class head) or "pixel" (the pixel D's, on each
    latent slice's frames decoded as ``gan_cfg.pixel_d_decode`` says, as in training)."""
    from vidgen_core.config import TrainConfig
    from vidgen_core.models.vae import video_to_frames
    from vidgen_core.train.fit_gan import pixel_view
    from vidgen_core.train.precision import resolve_numerics

    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(labels, dtype=torch.long).repeat_interleave(k)
    z = generator(torch.randn(len(y), generator.noise_dim, generator=g), y)
    if head.startswith("pixel"):
        view = pixel_view(gan_cfg, vae, generator, resolve_numerics(TrainConfig(precision="fp32"), "cpu"))
        log_p, real = _pixel_scores(discriminator, view.decode, z, y)
        p = {"pixel": log_p, "pixel_real": real, "pixel_both": log_p + real}[head].view(len(labels), k)
    else:
        _, class_logits = discriminator(z, y, with_class=True)
        p = class_logits.softmax(1).gather(1, y[:, None]).view(len(labels), k)
    z = z.view(len(labels), k, *z.shape[1:])[torch.arange(len(labels)), p.argmax(1)] / generator.latent_scale
    return np.concatenate([video_to_frames(vae.decode(z[i : i + 32])) for i in range(0, len(z), 32)])


def run_gan(cfg: PipelineConfig, train: tuple, test: tuple, over: dict, workdir: Path, ks: list[int], seeds: int,
            heads: tuple[str, ...] = ("latent",)) -> None:
    from vidgen_core.eval.gan_eval import evaluate_samples, score_set
    from vidgen_core.eval.judge import JudgeFeatures
    from vidgen_core.eval.sample_metrics import colourfulness, features
    from vidgen_core.models.io import load_model
    from vidgen_core.train.fit_gan import fit_gan

    gan_cfg = cfg.gan.model_copy(update=over.get("gan", {}))
    tcfg = cfg.train_gan.model_copy(update=over.get("train", {}))
    vae, _ = load_model(newest(workdir, "train_vae", "model"))
    judge, _ = load_model(newest(workdir, "train_judge", "judge"))
    num_classes = int(train[1].max()) + 1

    def batches():
        g = np.random.default_rng(tcfg.seed)
        while True:
            idx = g.choice(len(train[0]), tcfg.batch_size, replace=False)
            yield train[0][idx], train[1][idx]

    t0 = time.time()
    models = fit_gan(gan_cfg, tcfg, vae.eval(), batches(), num_classes)
    seconds = time.time() - t0
    generator = models.serving.eval()
    m = evaluate_samples(generator, vae, train, test, judge.eval(), seeds=seeds)
    figures = ("fd", "precision", "recall", "class_consistency", "diversity_ratio", "colour_ratio")
    emit(settings=over, train_seconds=seconds, **{f"{s}_{f}": m[f"{s}_{f}"] for s in ("gan", "real", "prior") for f in figures})
    feature = JudgeFeatures(judge)
    real_feats, real_colour = features(feature, test[0]), colourfulness(test[0])
    for head in heads:
        for k in ks:
            rows = [score_set(best_of(generator, models.discriminator.eval(), vae, test[1], k, 10_000 + s, head, gan_cfg), test[1],
                              test[0], test[1], feature, judge, real_feats, real_colour) for s in range(seeds)]
            emit(settings=over, best_of=k, head=head,
                 **{f"gan_{key}": float(np.mean([r[key] for r in rows])) for key in rows[0]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=("vae", "judge", "gan"))
    ap.add_argument("-w", "--workdir", default="vidgen-work", help="a finished `vidgen run` work directory")
    ap.add_argument("-c", "--config", default=str(DEFAULT_RECIPE), help="the recipe the run used")
    ap.add_argument("--set", default="{}", help='JSON overrides: the train section (vae, judge) or {"gan": ..., "train": ...}')
    ap.add_argument("--every", type=int, default=1000, help="vae: test figures every N steps")
    ap.add_argument("--best-of", type=int, nargs="*", default=[], help="gan: also score discriminator rejection with K candidates")
    ap.add_argument("--reject-by", nargs="*", default=["latent"], choices=("latent", "pixel", "pixel_real", "pixel_both"),
                    help="gan: whose class head --best-of asks: the latent D's, the pixel D's (each slice's decoded frames), or both")
    ap.add_argument("--seeds", type=int, default=2, help="gan: sample draws per figure")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-to", type=Path, default=None,
                    help="vae: keep the trained VAE as this work dir (links to WORKDIR's clips and judge) for `gan -w`")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    cfg = load_config(args.config)
    shards = newest(workdir, "ingest", "shards")
    train, test = load_clips(shards, "train"), load_clips(shards, "test")
    emit(workdir=str(workdir), shards=shards, train_clips=len(train[0]), test_clips=len(test[0]))
    over = json.loads(args.set)
    if args.model == "vae":
        run_vae(cfg, train, test, over, args.every, workdir, args.save_to)
    elif args.model == "judge":
        run_judge(cfg, train, test, over, int(train[1].max()) + 1)
    else:
        run_gan(cfg, train, test, over, workdir, args.best_of, args.seeds, tuple(args.reject_by))


if __name__ == "__main__":
    main()
