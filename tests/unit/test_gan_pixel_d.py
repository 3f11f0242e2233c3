"""The latent GAN's pixel discriminator: frames the frozen VAE decodes from real and generated
latents are judged too, and G's gradient reaches it through the decoder."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from vidgen_core.config import GANConfig, TrainConfig, VAEConfig
from vidgen_core.models.gan import LatentAndPixelDiscriminator, LatentDiscriminator, LatentGenerator, build_discriminator
from vidgen_core.models.vae import VideoVAE
from vidgen_core.train.fit_gan import fit_gan, pixel_d_shape, pixel_view
from vidgen_core.train.gan_steps import _pixel_inputs, discriminator_step, generator_step
from vidgen_core.train.optim import Optim
from vidgen_core.train.precision import resolve_numerics

CFG = GANConfig(noise_dim=8, base_channels=8, pixel_d_weight=1.0, pixel_d_batch=4)
SMALL_VAE = VAEConfig(base_channels=8)


def _clips(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 16, 16, 3), dtype=np.uint8)


def _setup(weight: float, seed: int = 0):
    torch.manual_seed(seed)
    vae = VideoVAE(SMALL_VAE).eval().requires_grad_(False)
    cfg = CFG.model_copy(update={"pixel_d_weight": weight})
    latent_shape = (4, 4, 4, 4)  # (C, T', H', W') of 8-frame 16-px clips at the VAE's default factors
    g = LatentGenerator(cfg, latent_shape, 2)
    d = build_discriminator(cfg, latent_shape, 2, pixel_d_shape(cfg, vae, latent_shape))
    numerics = resolve_numerics(TrainConfig(), "cpu")
    return vae, cfg, g, d, numerics


def test_the_pixel_d_reads_the_frames_of_one_latent_slice_decoded_with_the_whole_clip() -> None:
    vae, cfg, g, d, numerics = _setup(1.0)
    assert cfg.pixel_d_decode == "clip"  # the default
    assert isinstance(d, LatentAndPixelDiscriminator)
    assert d.pixel_shape == (3, 2, 16, 16)  # one latent time slice = the VAE's 2 frames, full size
    view = pixel_view(cfg, vae, g, numerics)
    assert view.num_slices == 4 and view.batch == 4
    z = torch.randn(3, 4, 4, 4, 4, requires_grad=True)
    frames = view.decode(z, 2)
    assert frames.shape == (3, 3, 2, 16, 16)
    with torch.no_grad(), numerics.autocast():  # the frames a sample shows for slice 2: frames 4-5 of the whole clip's
        whole = vae.decode(numerics.to_input(z)).float()
        alone = vae.decode(numerics.to_input(z[:, :, 2:3])).float()
    assert torch.allclose(frames, whole[:, :, 4:6], atol=1e-5)
    assert not torch.allclose(frames, alone, atol=1e-3)  # decoding a slice alone renders it otherwise
    frames.square().sum().backward()  # G learns how its neighbouring slices shape these frames
    assert z.grad[:, :, 2].abs().sum() > 0 and z.grad[:, :, 1].abs().sum() > 0 and z.grad[:, :, 3].abs().sum() > 0


def test_pixel_d_decode_slice_decodes_the_slice_alone() -> None:
    vae, cfg, g, d, numerics = _setup(1.0)
    view = pixel_view(cfg.model_copy(update={"pixel_d_decode": "slice"}), vae, g, numerics)
    z = torch.randn(3, 4, 4, 4, 4, requires_grad=True)
    frames = view.decode(z, 2)
    with torch.no_grad(), numerics.autocast():
        assert torch.allclose(frames, vae.decode(numerics.to_input(z[:, :, 2:3])).float(), atol=1e-5)
    frames.square().sum().backward()  # differentiable in the latents, only through slice 2
    assert z.grad[:, :, 2].abs().sum() > 0 and z.grad[:, :, [0, 1, 3]].abs().sum() == 0
    # No pixel D where it is switched off or where there is no decoder to read (pixel GAN).
    assert pixel_d_shape(cfg.model_copy(update={"pixel_d_weight": 0.0}), vae, (4, 4, 4, 4)) is None
    assert pixel_d_shape(cfg.model_copy(update={"space": "pixel"}), vae, (4, 4, 4, 4)) is None
    assert isinstance(build_discriminator(cfg, (4, 4, 4, 4), 2), LatentDiscriminator)


def test_both_steps_train_the_pixel_d_and_send_its_gradient_to_g() -> None:
    vae, cfg, g, d, numerics = _setup(1.0)
    view = pixel_view(cfg, vae, g, numerics)
    train = TrainConfig(lr=1e-3)
    opt_d = Optim(d.parameters(), 1e-3, train, (0.0, 0.99), numerics.grad_scaler(), False)
    opt_g = Optim(g.parameters(), 1e-3, train, (0.0, 0.99), numerics.grad_scaler(), False)
    real, y = torch.randn(8, 4, 4, 4, 4), torch.arange(8) % 2
    before = [p.detach().clone() for p in d.pixel.parameters()]
    out_d = discriminator_step(g, d, opt_d, [real], [y], numerics, class_loss=1.0, pixels=view)
    for key in ("loss_d_pixel", "d_real_pixel", "d_fake_pixel", "class_d_pixel"):
        assert math.isfinite(float(out_d[key])), key
    assert any(not torch.equal(a, b) for a, b in zip(before, d.pixel.parameters()))

    # G's gradient with the pixel D differs from its gradient without it: the pixel term reaches G.
    def g_grads(pixels) -> torch.Tensor:
        torch.manual_seed(1)
        g.zero_grad()
        generator_step(g, d, _NoStep(opt_g), 8, [y], numerics, class_loss=1.0, pixels=pixels)
        return torch.cat([p.grad.flatten() for p in g.parameters() if p.grad is not None])

    assert not torch.allclose(g_grads(view), g_grads(None))


class _NoStep:
    """An Optim stand-in that keeps the gradients for inspection."""

    def __init__(self, optim: Optim) -> None:
        self.optim = optim

    def zero_grad(self) -> None:
        self.optim.zero_grad()

    def backward(self, loss: torch.Tensor) -> None:
        self.optim.backward(loss)

    def step(self) -> torch.Tensor:
        return torch.zeros(())


def test_fit_gan_logs_the_pixel_d_and_builds_it_only_when_asked() -> None:
    logs: list[dict[str, float]] = []
    vae = VideoVAE(SMALL_VAE)
    batches = ((_clips(4, i), np.arange(4) % 2) for i in range(3))
    models = fit_gan(CFG, TrainConfig(steps=3, log_every=3, checkpoint_every=3), vae, batches, 2,
                     on_log=lambda s, m: logs.append(m))
    assert isinstance(models.discriminator, LatentAndPixelDiscriminator)
    assert all(math.isfinite(logs[-1][k]) for k in ("loss_d_pixel", "d_real_pixel", "d_fake_pixel", "class_d_pixel"))
    off = CFG.model_copy(update={"pixel_d_weight": 0.0})
    models = fit_gan(off, TrainConfig(steps=1), vae, ((_clips(4, 0), np.arange(4) % 2) for _ in range(1)), 2)
    assert isinstance(models.discriminator, LatentDiscriminator)


def test_pixel_d_real_clips_shows_the_real_frames_of_the_slice_instead_of_their_decoding() -> None:
    vae, cfg, g, d, numerics = _setup(1.0)
    view = pixel_view(cfg.model_copy(update={"pixel_d_augment": []}), vae, g, numerics)  # frames as they are
    real_video = torch.rand(4, 3, 8, 16, 16) * 2 - 1  # 4 latent slices of 2 frames
    real, fake = torch.randn(4, 4, 4, 4, 4), torch.randn(4, 4, 4, 4, 4)
    torch.manual_seed(3)
    t = int(torch.randint(view.num_slices, ()))  # the slice _pixel_inputs draws next under this seed
    torch.manual_seed(3)
    extra, pb = _pixel_inputs(view, [real, fake], None, numerics, real_video)
    assert pb == 4 and extra["pixels"].shape == (8, 3, 2, 16, 16)
    assert torch.equal(extra["pixels"][:4], real_video[:, :, 2 * t : 2 * t + 2])  # real half: the clips' frames
    assert torch.allclose(extra["pixels"][4:], view.decode(fake, t))  # fake half: decoded as before
    # fit_gan feeds the clips through when asked, and trains as before.
    clips_cfg = CFG.model_copy(update={"pixel_d_real": "clips"})
    logs: list[dict[str, float]] = []
    batches = ((_clips(4, i), np.arange(4) % 2) for i in range(2))
    fit_gan(clips_cfg, TrainConfig(steps=2, log_every=2, checkpoint_every=2), vae, batches, 2,
            on_log=lambda s, m: logs.append(m))
    assert math.isfinite(logs[-1]["d_real_pixel"])


def _widest_view(grid: int) -> int:
    """The most pixels across that one last-layer feature of the pixel D sees in a 32x32 frame
    (the sum-pool then only adds such features up, so no feature sees further)."""
    torch.manual_seed(0)
    d = LatentAndPixelDiscriminator(CFG.model_copy(update={"pixel_d_grid": grid}), (4, 4, 8, 8), (3, 2, 32, 32), 2).pixel
    x = torch.randn(1, 3, 2, 32, 32, requires_grad=True)
    h = d.pre(torch.nn.functional.leaky_relu(d.conv1(x), 0.2))
    h = torch.nn.functional.leaky_relu(d.conv3(torch.nn.functional.leaky_relu(d.conv2(h), 0.2)), 0.2)
    widest = 0
    for i in range(h.shape[-2]):
        for j in range(h.shape[-1]):
            (grad,) = torch.autograd.grad(h[..., i, j].sum(), x, retain_graph=True)
            cols = grad.abs().sum(dim=(0, 1, 2, 3)).nonzero()
            widest = max(widest, int(cols.max() - cols.min()) + 1)
    return widest


def test_a_last_feature_of_the_pixel_d_sees_the_whole_frame() -> None:
    # At grid 8 (the default) a feature reads both sides of a 32x32 frame, so an object whose two
    # sides have two hues is seen whole; at grid 16 each feature saw 17-pixel-wide patches.
    assert GANConfig().pixel_d_grid == 8
    assert _widest_view(8) == 32
    assert _widest_view(16) == 17


def test_pixel_d_channels_sets_the_pixel_d_width_only() -> None:
    cfg = CFG.model_copy(update={"pixel_d_channels": 12})
    d = LatentAndPixelDiscriminator(cfg, (4, 4, 8, 8), (3, 2, 32, 32), 2)
    assert d.pixel.conv1.out_channels == 12 and d.latent.conv1.out_channels == CFG.base_channels
    assert LatentAndPixelDiscriminator(CFG.model_copy(update={"pixel_d_channels": None}), (4, 4, 8, 8), (3, 2, 32, 32),
                                       2).pixel.conv1.out_channels == CFG.base_channels


def test_pixel_augment_permutes_channels_and_flips_each_sample_and_keeps_the_gradient() -> None:
    from vidgen_core.train.augment import augment_pixels

    torch.manual_seed(0)
    px = torch.rand(64, 3, 2, 4, 5, requires_grad=True)
    assert augment_pixels(px, ()) is px
    out = augment_pixels(px, ("rgb_permute", "hflip"))
    assert out.shape == px.shape
    orders, flips = set(), set()
    for i in range(len(px)):
        found = [(order, flip) for order in itertools.permutations(range(3)) for flip in (False, True)
                 if torch.equal(out[i], (px[i, list(order)].flip(3) if flip else px[i, list(order)]))]
        assert len(found) == 1, i  # each sample is one channel order of its own, mirrored or not
        orders.add(found[0][0])
        flips.add(found[0][1])
    assert len(orders) == 6 and flips == {False, True}
    out.sum().backward()  # a permutation and a mirror move values: every input gets gradient 1
    assert torch.equal(px.grad, torch.ones_like(px))


def test_the_pixel_d_reads_augmented_frames_when_asked() -> None:
    vae, cfg, g, d, numerics = _setup(1.0)
    latents = torch.randn(4, 4, 4, 4, 4)
    assert cfg.pixel_d_augment == ["rgb_permute", "hflip"]  # the default
    plain = pixel_view(cfg.model_copy(update={"pixel_d_augment": []}), vae, g, numerics)
    mirrored = pixel_view(cfg.model_copy(update={"pixel_d_augment": ["hflip"]}), vae, g, numerics)
    assert mirrored.augment == ("hflip",) and plain.augment == ()
    torch.manual_seed(1)
    a, _ = _pixel_inputs(plain, [latents], None, numerics)
    torch.manual_seed(1)
    b, _ = _pixel_inputs(mirrored, [latents], None, numerics)
    same = [torch.equal(x, y) for x, y in zip(a["pixels"], b["pixels"])]
    flipped = [torch.equal(x.flip(3), y) for x, y in zip(a["pixels"], b["pixels"])]
    assert all(s or f for s, f in zip(same, flipped)) and not all(same)
