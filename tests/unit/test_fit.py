"""The framework-free training loops, their hooks, and checkpoint round trips."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from vidgen_core.config import GANConfig, TrainConfig, VAEConfig, VAETrainConfig
from vidgen_core.models.io import load_model, save_model
from vidgen_core.models.vae import VideoVAE
from vidgen_core.train.checkpoint import capture_state, load_state, restore_state, save_state
from vidgen_core.train.fit_gan import fit_gan, sample_videos
from vidgen_core.train.fit_vae import fit_vae

SMALL_VAE = VAEConfig(base_channels=8)
SMALL_GAN = GANConfig(noise_dim=8, base_channels=8)


def _clips(n: int, t: int = 8, size: int = 16, seed: int = 0) -> np.ndarray:
    """Moving bright squares on a dark background: uint8 (n, t, size, size, 3)."""
    rng = np.random.default_rng(seed)
    clips = np.full((n, t, size, size, 3), 20, dtype=np.uint8)
    for i in range(n):
        colour = rng.integers(80, 256, size=3)
        x, y = rng.integers(0, size // 2, size=2)
        for f in range(t):
            xx = (x + f) % (size - 4)
            clips[i, f, y : y + 5, xx : xx + 5] = colour
    return clips


def test_fit_vae_overfits_one_batch() -> None:
    batch = _clips(4)
    logs: list[tuple[int, dict[str, float]]] = []
    cfg = VAETrainConfig(steps=60, lr=3e-3, log_every=10, checkpoint_every=1000)
    fit_vae(SMALL_VAE, cfg, itertools.repeat(batch), on_log=lambda s, m: logs.append((s, m)))
    assert [s for s, _ in logs] == [10, 20, 30, 40, 50, 60]
    first, last = logs[0][1], logs[-1][1]
    for key in ("loss", "rec", "kl", "grad_norm", "lr", "step_time_s", "clips_per_s"):
        assert key in last and math.isfinite(last[key]), key
    assert last["lr"] == pytest.approx(3e-3)
    assert last["rec"] < 0.6 * first["rec"], (first, last)


def test_fit_vae_accepts_torch_batches_and_pairs() -> None:
    frames = torch.from_numpy(_clips(2))
    cfg = VAETrainConfig(steps=2, log_every=1)
    logs: list[int] = []
    fit_vae(SMALL_VAE, cfg, itertools.repeat((frames, torch.zeros(2))), on_log=lambda s, m: logs.append(s))
    assert logs == [1, 2]


def test_fit_vae_needs_enough_batches() -> None:
    with pytest.raises(ValueError, match="cycled"):
        fit_vae(SMALL_VAE, VAETrainConfig(steps=3), iter([_clips(2)]))


def test_fit_vae_resume_matches_uninterrupted_run(tmp_path) -> None:
    """Checkpoint at step 3, resume to step 6: same weights as 6 straight steps."""
    batches = [_clips(2, seed=i) for i in range(6)]
    cfg = VAETrainConfig(steps=6, checkpoint_every=3, log_every=3, seed=5)

    straight = fit_vae(SMALL_VAE, cfg, iter(batches))

    saved: list[int] = []

    def on_checkpoint(step, state_fn):
        if step == 3:
            save_state(state_fn(), tmp_path / "ckpt")
        saved.append(step)

    # A first run that "crashes" after step 3 (its iterator has only three batches).
    with pytest.raises(ValueError):
        fit_vae(SMALL_VAE, cfg, iter(batches[:3]), on_checkpoint=on_checkpoint)
    assert saved == [3]
    state = load_state(tmp_path / "ckpt")
    assert state.step == 3 and "loss" in state.extra["metrics"]

    logged: list[int] = []
    resumed = fit_vae(SMALL_VAE, cfg, iter(batches[3:]), on_log=lambda s, m: logged.append(s), state=state)
    assert logged == [6]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_checkpoint_round_trip_restores_optimizer_exactly(tmp_path) -> None:
    model = VideoVAE(SMALL_VAE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.99))
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    for _ in range(2):
        opt.zero_grad()
        model(x).recon.abs().mean().backward()
        opt.step()
    save_state(capture_state(2, {"vae": model}, {"vae": opt}, extra={"note": "x"}), tmp_path)

    model2 = VideoVAE(VAEConfig(base_channels=8))
    opt2 = torch.optim.Adam(model2.parameters(), lr=5.0)
    state = load_state(tmp_path)
    assert restore_state(state, {"vae": model2}, {"vae": opt2}) == 2
    assert state.extra == {"note": "x"}
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for key, value in a["state"][i].items():
            assert torch.equal(value, b["state"][i][key]), (i, key)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(KeyError, match="generator"):
        restore_state(state, {"generator": model2}, {})


def test_fit_vae_under_ddp_saves_unwrapped(tmp_path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(VideoVAE(SMALL_VAE))
        trained = fit_vae(SMALL_VAE, VAETrainConfig(steps=2), itertools.repeat(_clips(2)), model=ddp)
        assert trained is ddp
        save_model(trained, "vae", SMALL_VAE.model_dump(), tmp_path / "m")
        loaded, _ = load_model(tmp_path / "m")
        assert not any(k.startswith("module.") for k in loaded.state_dict())
    finally:
        dist.destroy_process_group()


def _labelled(n_batches: int, batch: int = 4, num_classes: int = 3):
    for i in range(n_batches):
        yield _clips(batch, seed=i), np.arange(batch) % num_classes


@pytest.mark.parametrize("num_classes", [3, 0])
def test_fit_gan_runs_with_finite_losses(num_classes: int) -> None:
    vae = VideoVAE(SMALL_VAE)
    logs: list[dict[str, float]] = []
    checkpoints: list[int] = []
    cfg = TrainConfig(steps=4, lr=2e-4, log_every=2, checkpoint_every=2)

    def on_checkpoint(step, state_fn):
        state = state_fn()
        assert set(state.models) == {"generator", "discriminator"}
        assert state.extra["latent_scale"] > 0
        checkpoints.append(step)

    g, d, serving = fit_gan(
        SMALL_GAN, cfg, vae, _labelled(4), num_classes,
        on_log=lambda s, m: logs.append(m), on_checkpoint=on_checkpoint,
    )
    assert len(logs) == 2 and checkpoints == [2, 4]
    for key in ("loss", "loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "lr_g", "lr_d"):
        assert math.isfinite(logs[-1][key]), key
    # The auxiliary class loss (on by default) exists only where there are classes.
    assert ("class_d" in logs[-1] and "class_g" in logs[-1]) == (num_classes > 0)
    assert g.conditional == (num_classes > 0)
    # Latents reaching D have unit std on the first batch.
    with torch.no_grad():
        from vidgen_core.train.fit_gan import encode_latents

        mean = encode_latents(vae, _clips(4, seed=0), "cpu")
    assert float((mean * g.latent_scale).std()) == pytest.approx(1.0, rel=0.05)
    videos = sample_videos(g, vae, 3, seed=1)
    assert videos.shape == (3, 3, 8, 16, 16)
    assert torch.equal(videos, sample_videos(g, vae, 3, seed=1))
    assert serving is not g and float(serving.latent_scale) == float(g.latent_scale)  # the EMA copy


def test_fit_gan_rejects_unlabelled_clips_when_conditional() -> None:
    batches = itertools.repeat((_clips(2), np.array([-1, -1])))
    with pytest.raises(ValueError, match="conditional=false"):
        fit_gan(SMALL_GAN, TrainConfig(steps=1), VideoVAE(SMALL_VAE), batches, 3)
