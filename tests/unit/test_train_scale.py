"""Training at scale without Ray: causal VAE, schedules, EMA, accumulation, bf16/channels_last on CPU,
full-state resume, R1, the GAN guardrail, pixel GAN, the adversarial VAE term and data positions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from vidgen_core.config import GANConfig, TrainConfig, VAEConfig, VAETrainConfig
from vidgen_core.models.gan import LatentDiscriminator, PixelGenerator
from vidgen_core.models.io import load_model, save_model
from vidgen_core.models.vae import VideoVAE
from vidgen_core.train import fit_gan as fit_gan_module
from vidgen_core.train.checkpoint import load_state, save_state
from vidgen_core.train.ema import EMA
from vidgen_core.train.fit_gan import fit_gan, sample_videos
from vidgen_core.train.fit_vae import fit_vae
from vidgen_core.train.guard import GANDiverged
from vidgen_core.train.loop import EpochBatches
from vidgen_core.train.losses import r1_penalty
from vidgen_core.train.optim import LRSchedule, Optim
from vidgen_core.train import precision as precision_module
from vidgen_core.train.precision import resolve_numerics

SMALL_VAE = VAEConfig(base_channels=8)
SMALL_GAN = GANConfig(noise_dim=8, base_channels=8)


def _clips(n: int, t: int = 8, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clips = np.full((n, t, size, size, 3), 20, dtype=np.uint8)
    for i in range(n):
        colour, (x, y) = rng.integers(80, 256, size=3), rng.integers(0, size // 2, size=2)
        for f in range(t):
            clips[i, f, y : y + 5, (x + f) % (size - 4) : (x + f) % (size - 4) + 5] = colour
    return clips


def _labelled(n_batches: int, batch: int = 4, num_classes: int = 3):
    return [(_clips(batch, seed=i), np.arange(batch) % num_classes) for i in range(n_batches)]


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(("t_down", "s_down", "latent"), [(4, 8, (4, 2, 4, 4)), (2, 4, (4, 4, 8, 8))])
def test_vae_downsampling_factors(t_down: int, s_down: int, latent: tuple[int, ...]) -> None:
    cfg = VAEConfig(base_channels=8, channel_mult=[1, 2, 2], temporal_downsample=t_down, spatial_downsample=s_down, num_res_blocks=2)
    vae = VideoVAE(cfg)
    out = vae(torch.rand(1, 3, 8, 32, 32) * 2 - 1)
    assert tuple(out.posterior.mean.shape[1:]) == latent and out.recon.shape == (1, 3, 8, 32, 32)


def test_causal_vae_ignores_future_frames() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 16, 16) * 2 - 1
    later = x.clone()
    later[:, :, 5:] = torch.rand(1, 3, 3, 16, 16)  # change frames 5, 6, 7
    for causal in (True, False):
        vae = VideoVAE(VAEConfig(base_channels=8, causal=causal)).eval()
        with torch.no_grad():
            a, b = vae(x, sample=False).recon, vae(later, sample=False).recon
        same_past = torch.allclose(a[:, :, :5], b[:, :, :5], atol=1e-6)
        assert same_past == causal  # causal: frames 0..4 untouched; clip-wide convs/norms leak the future


def test_pixel_generator_and_discriminator_round_trip(tmp_path) -> None:
    cfg = GANConfig(space="pixel", noise_dim=8, base_channels=8, spectral_norm=False)
    g, d = PixelGenerator(cfg, (3, 4, 32, 32), 2), LatentDiscriminator(cfg, (3, 4, 32, 32), 2)
    y = torch.tensor([0, 1])
    with torch.no_grad():
        clips = g(torch.randn(2, 8), y)
    assert clips.shape == (2, 3, 4, 32, 32) and float(clips.abs().max()) <= 1.0
    assert d(clips, y).shape == (2,) and not any("parametrizations" in k for k in d.state_dict())
    save_model(g, "gan", cfg.model_dump(), tmp_path, extra={"latent_shape": [3, 4, 32, 32], "num_classes": 2})
    g2, _ = load_model(tmp_path)
    assert isinstance(g2, PixelGenerator)
    from vidgen_core.eval.inference import generate

    frames = generate(g2, None, np.array([0, 1, 1]), num_samples=3, batch_size=2, seed=3)
    assert frames.shape == (3, 4, 32, 32, 3) and frames.dtype == np.uint8


# --------------------------------------------------------------------------- losses, schedules, EMA


def test_r1_penalty_of_a_linear_discriminator() -> None:
    w = torch.tensor([3.0, -4.0])
    real = torch.randn(5, 2, requires_grad=True)
    # D(x) = w·x: grad = w for every sample, ||w||² = 25
    assert r1_penalty(real @ w, real).item() == pytest.approx(25.0)


def test_lr_schedule_values() -> None:
    cos = LRSchedule("cosine", total_steps=10, warmup_steps=2, min_ratio=0.1)
    assert [cos(s) for s in (0, 1)] == [0.5, 1.0]  # warm-up: (step + 1) / warmup
    assert cos(2) == pytest.approx(1.0) and cos(10) == pytest.approx(0.1)
    assert cos(6) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    lin = LRSchedule("linear", total_steps=4, min_ratio=0.0)
    assert [lin(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert LRSchedule("constant", 5)(3) == 1.0


def test_optim_clips_schedules_and_restores(tmp_path) -> None:
    model = nn.Linear(4, 1)
    cfg = TrainConfig(steps=10, lr=0.1, warmup_steps=4, grad_clip=0.5)
    opt = Optim(model.parameters(), cfg.lr, cfg)
    assert opt.lr == pytest.approx(0.025)
    opt.zero_grad()
    opt.backward(model(torch.full((2, 4), 100.0)).sum())
    assert float(opt.step()) > 0.5  # pre-clip norm returned ...
    assert float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm()) == pytest.approx(0.5, rel=1e-4)
    assert opt.lr == pytest.approx(0.05)  # ... and the schedule advanced
    opt.scale_lr(0.5)
    assert opt.lr == pytest.approx(0.025)
    opt2 = Optim(nn.Linear(4, 1).parameters(), cfg.lr, cfg)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.lr == pytest.approx(0.025) and opt2.scheduler.last_epoch == 1
    opt2.zero_grad()
    opt2.backward(torch.zeros((), requires_grad=True) + sum(p.sum() for p in opt2.params))
    opt2.step()
    assert opt2.lr == pytest.approx(0.5 * 0.1 * 3 / 4)  # the lowered base LR persists past the restore


def test_ema_ramps_up_and_tracks() -> None:
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 0.0)
    ema = EMA(model, decay=0.9)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    model.weight.data.fill_(1.0)
    ema.update(model)  # 0.1 · 0 + 0.9 · 1
    assert float(ema.module.weight) == pytest.approx(0.9)
    ema.updates = 1000
    ema.update(model)  # decay capped at 0.9: 0.9 · 0.9 + 0.1 · 1
    assert float(ema.module.weight) == pytest.approx(0.91)
    assert not ema.module.weight.requires_grad


# --------------------------------------------------------------------------- loops


# Equivalence tests use 16 base channels: with 8, some GroupNorms have one channel per group,
# the conv bias before them gets an exactly-zero gradient, and Adam turns its float noise
# into +-lr steps that differ between any two summation orders.
EQUIV_VAE = VAEConfig(base_channels=16)


def test_grad_accumulation_matches_one_large_batch() -> None:
    """2 micro-batches of 2 give the same update as one batch of 4 (same data, same posterior noise).

    In fp32: the tolerance is float32 summation order (auto would take bf16 on an AMX CPU)."""
    data = [_clips(4, seed=i) for i in range(3)]
    big = fit_vae(EQUIV_VAE, VAETrainConfig(steps=3, batch_size=4, precision="fp32"), iter(data))
    halves = [half for d in data for half in (d[:2], d[2:])]
    small = fit_vae(EQUIV_VAE, VAETrainConfig(steps=3, batch_size=2, grad_accum=2, precision="fp32"), iter(halves))
    for (k, a), b in zip(big.state_dict().items(), small.state_dict().values()):
        assert torch.allclose(a, b, atol=2e-5), k


@pytest.mark.parametrize("amx", [True, False])
def test_auto_precision_on_a_cpu_is_bf16_only_with_amx(monkeypatch, amx: bool) -> None:
    """Without AMX, oneDNN emulates bf16 (1.4-75x slower than fp32): auto keeps fp32 there, and
    asking for bf16 anyway warns in one line."""
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: amx)
    auto = resolve_numerics(TrainConfig(), "cpu")
    assert auto.dtype == (torch.bfloat16 if amx else torch.float32)
    assert auto.describe() == ("bf16 autocast" if amx else "fp32") + ", channels_last_3d on cpu"
    if amx:
        resolve_numerics(TrainConfig(precision="bf16"), "cpu")  # no warning
    else:
        with pytest.warns(UserWarning, match="precision=bf16 on a CPU without AMX"):
            resolve_numerics(TrainConfig(precision="bf16"), "cpu")
    assert resolve_numerics(TrainConfig(precision="fp32"), "cpu").dtype == torch.float32
    assert resolve_numerics(TrainConfig(), "meta").dtype == torch.float32  # neither a GPU nor a CPU


def test_bf16_autocast_and_channels_last_step_on_cpu() -> None:
    cfg = VAETrainConfig(steps=2, precision="bf16", memory_format="channels_last_3d", log_every=1)
    numerics = resolve_numerics(cfg, "cpu")
    assert numerics.autocast_enabled and numerics.channels_last and not numerics.grad_scaler().is_enabled()
    dtypes: list[torch.dtype] = []
    model = numerics.prepare(VideoVAE(SMALL_VAE))
    model.encoder.conv_in.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    assert model.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last_3d)
    before = [p.detach().clone() for p in model.parameters()]
    logs: list[dict[str, float]] = []
    fit_vae(SMALL_VAE, cfg, itertools.repeat(_clips(2)), lambda s, m: logs.append(m), model)
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert all(math.isfinite(m["loss"]) for m in logs)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert resolve_numerics(TrainConfig(precision="fp16"), "cpu").grad_scaler().is_enabled()
    auto = resolve_numerics(TrainConfig(), "cpu")
    assert auto.channels_last  # auto: channels_last_3d everywhere; its dtype by CPU (next test)
    assert not resolve_numerics(TrainConfig(memory_format="contiguous"), "cpu").channels_last


def test_vae_adversarial_term_starts_after_its_step() -> None:
    cfg = VAETrainConfig(steps=4, log_every=1, adv_weight=0.1, adv_start_step=2, adv_disc_channels=8)
    logs: list[tuple[int, dict[str, float]]] = []
    fit_vae(VAEConfig(base_channels=8), cfg, itertools.repeat(_clips(2, size=16)), lambda s, m: logs.append((s, m)))
    assert [("loss_d" in m, "adv_g" in m) for _, m in logs] == [(False, False)] * 2 + [(True, True)] * 2
    assert all(math.isfinite(m["grad_norm_d"]) for _, m in logs[2:])


def test_gan_resume_restores_full_state(tmp_path) -> None:
    """Checkpoint at 3, resume to 6: params, Adam moments, EMA, schedules, data position = 6 straight steps."""
    cfg = TrainConfig(steps=6, checkpoint_every=3, log_every=3, lr=2e-4, warmup_steps=2, lr_schedule="cosine")
    vae = VideoVAE(SMALL_VAE)
    data = _labelled(3)

    def source():
        return EpochBatches(lambda epoch: iter(data))  # deterministic order: positions are exact

    states = {}

    def keep(step, state_fn):
        states[step] = state_fn()
        if step == 3:
            save_state(states[3], tmp_path)

    straight = fit_gan(SMALL_GAN, cfg, vae, source(), 3, on_checkpoint=keep)
    final = states[6]
    state = load_state(tmp_path)
    assert state.step == 3 and state.data == {"epoch": 0, "batch": 3} and "generator" in state.averages
    resumed_states = {}
    resumed = fit_gan(SMALL_GAN, cfg, vae, source(), 3, state=state,
                      on_checkpoint=lambda s, fn: resumed_states.__setitem__(s, fn()))
    again = resumed_states[6]
    for name in ("generator", "discriminator"):
        for k, v in final.models[name].items():
            assert torch.allclose(v, again.models[name][k], atol=1e-6), (name, k)
        a, b = final.optimizers[name], again.optimizers[name]
        assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
        for i, st in a["optimizer"]["state"].items():
            for key, value in st.items():
                assert torch.allclose(value, b["optimizer"]["state"][i][key], atol=1e-6), (name, i, key)
    for k, v in final.averages["generator"]["module"].items():
        assert torch.allclose(v, again.averages["generator"]["module"][k], atol=1e-6), k
    assert final.averages["generator"]["updates"] == again.averages["generator"]["updates"] == 6
    assert final.data == again.data
    assert float(resumed.serving.latent_scale) == pytest.approx(float(straight.serving.latent_scale))


def test_guard_rolls_back_with_lower_lr(monkeypatch) -> None:
    real_step = fit_gan_module.discriminator_step
    calls = {"n": 0}

    def flaky_step(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:  # step 5 blows up once
            out["loss_d"] = torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(fit_gan_module, "discriminator_step", flaky_step)
    events, logs = [], []
    cfg = TrainConfig(steps=6, checkpoint_every=2, log_every=1, lr=2e-4)
    out = fit_gan(SMALL_GAN, cfg, VideoVAE(SMALL_VAE), itertools.cycle(_labelled(2)), 3,
                  on_log=lambda s, m: logs.append((s, m)), on_event=lambda s, n, i: events.append((s, n, i)))
    assert [(s, n, i["to_step"]) for s, n, i in events] == [(5, "guard_rollback", 4)]
    assert [s for s, _ in logs] == [1, 2, 3, 4, 5, 6]  # step 5 re-run after the rollback, then 6
    assert logs[-1][1]["lr_g"] == pytest.approx(1e-4) and logs[-1][1]["rollbacks"] == 1
    assert all(math.isfinite(m["loss_d"]) for _, m in logs)
    assert out.serving is not None


def test_guard_gives_up_after_max_rollbacks() -> None:
    gan = GANConfig(noise_dim=8, base_channels=8, divergence_logit_max=1e-9, max_rollbacks=2)  # every step "diverges"
    events = []
    with pytest.raises(GANDiverged, match="after 2 rollback"):
        fit_gan(gan, TrainConfig(steps=4, log_every=1), VideoVAE(SMALL_VAE), itertools.cycle(_labelled(1)), 3,
                on_event=lambda s, n, i: events.append(i["lr_g"]))
    assert events == pytest.approx([5e-4, 2.5e-4])


def test_pixel_gan_trains_without_a_vae() -> None:
    cfg = GANConfig(space="pixel", noise_dim=8, base_channels=8, r1_gamma=1.0, conditional=False)
    logs = []
    out = fit_gan(cfg, TrainConfig(steps=2, log_every=1), None, itertools.cycle(_labelled(1)), 0, lambda s, m: logs.append(m))
    assert all(math.isfinite(m["r1"]) and m["r1"] >= 0 for m in logs)
    videos = sample_videos(out.serving, None, 2, seed=0)
    assert videos.shape == (2, 3, 8, 16, 16) and float(videos.abs().max()) <= 1.0


def test_epoch_batches_positions_resume_exactly() -> None:
    source = [np.full((1,), i) for i in range(5)]  # 5 batches per epoch
    a = EpochBatches(lambda epoch: iter(source))
    seen = [int(next(a)[0]) for _ in range(7)]
    assert seen == [0, 1, 2, 3, 4, 0, 1] and a.state_dict() == {"epoch": 1, "batch": 2}
    assert int(a.peek()[0]) == 2 and a.state_dict() == {"epoch": 1, "batch": 2}  # peeking does not consume
    b = EpochBatches(lambda epoch: iter(source))
    b.load_state_dict(a.state_dict())
    assert [int(next(b)[0]) for _ in range(4)] == [int(next(a)[0]) for _ in range(4)] == [2, 3, 4, 0]
    with pytest.raises(ValueError, match="no batch"):
        next(EpochBatches(lambda epoch: iter([])))


# --------------------------------------------------------------------------- GPU only


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
def test_bf16_channels_last_fused_step_on_cuda() -> None:
    logs = []
    model = fit_vae(SMALL_VAE, VAETrainConfig(steps=3, log_every=1), itertools.repeat(_clips(2)),
                    lambda s, m: logs.append(m), device="cuda")
    assert next(model.parameters()).is_contiguous(memory_format=torch.channels_last_3d)
    assert all(math.isfinite(m["loss"]) for m in logs)


@pytest.mark.gpu
@gpu
def test_torch_compile_step_on_cuda(tmp_path) -> None:
    model = fit_vae(SMALL_VAE, VAETrainConfig(steps=2, compile=True), itertools.repeat(_clips(2)), device="cuda")
    save_model(model, "vae", SMALL_VAE.model_dump(), tmp_path)  # unwraps _orig_mod
    loaded, _ = load_model(tmp_path)
    assert not any(k.startswith("_orig_mod") for k in loaded.state_dict())


def test_newest_complete_checkpoint_on_storage(tmp_path) -> None:
    """A restarted worker resumes from the newest complete checkpoint dir, even one Ray never registered."""
    from vidgen_core.train.checkpoint import capture_state
    from vidgen_core.train.ray_state import _newest_on_storage

    model = nn.Linear(1, 1)
    for step in (5, 10):
        save_state(capture_state(step, {"m": model}, {}), tmp_path / f"checkpoint_{step:08d}")
    (tmp_path / "checkpoint_00000015").mkdir()  # still being written: no meta.json yet
    (tmp_path / "checkpoint_00000015" / "state.pt").write_bytes(b"partial")
    assert _newest_on_storage(str(tmp_path), 5) == (10, f"{tmp_path}/checkpoint_00000010")
    assert _newest_on_storage(str(tmp_path), 10) is None
    assert _newest_on_storage(str(tmp_path / "missing"), 0) is None
