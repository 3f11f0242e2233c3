"""The GAN's two step functions: one discriminator update, one generator update (torch only).

Each runs ``len(micro-batches)`` forward/backward passes (gradient
accumulation; DDP syncs only on the last) and one optimizer step through its
own :class:`~vidgen_core.train.optim.Optim` (Adam, schedule, clipping,
scaler). Losses are hinge losses computed in float32, plus the optional R1
penalty on real samples for D and the optional auxiliary class loss (AC-GAN):
D learns to classify *real* samples, G to make samples D classifies as their
label. D's class head never trains on fakes, so it cannot learn that "fake"
is a class of its own.

With a :class:`PixelView` (latent GAN, ``gan.pixel_d_weight > 0``) the
discriminator is a :class:`~vidgen_core.models.gan.LatentAndPixelDiscriminator`:
the first ``batch`` real and generated samples of each micro-batch are also
decoded (the frames of one latent time slice, drawn per step; see ``gan.pixel_d_decode``) and its pixel D adds the same
losses, weighted by ``weight``; G's gradient reaches it through the frozen decoder.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vidgen_core.train.augment import augment_pixels
from vidgen_core.train.losses import hinge_d_loss, hinge_g_loss, mode_seeking_penalty, r1_penalty
from vidgen_core.train.loop import unwrap
from vidgen_core.train.optim import Optim, no_sync
from vidgen_core.train.precision import Numerics


class PixelView(NamedTuple):
    """What the pixel D sees. ``decode(latents, t)``: generator-space latents (b, C, T', H', W')
    -> float32 frames (b, 3, T_px, H, W) of latent time slice ``t`` in [0, num_slices), decoded by
    the frozen VAE (differentiable in the latents). ``batch``: samples per micro-batch decoded;
    ``weight``: the pixel D's share of each loss."""

    decode: Callable[[torch.Tensor, int], torch.Tensor]
    num_slices: int
    batch: int
    weight: float
    augment: tuple[str, ...] = ()


def _pair(labels: torch.Tensor | None) -> torch.Tensor | None:
    return torch.cat([labels, labels]) if labels is not None else None


def _head(labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return labels[:n] if labels is not None else None


def _logits(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor], classify: bool) -> torch.Tensor:
    return (out[0] if classify else out).float()


def _pixel_inputs(
    pixels: PixelView | None,
    latents: list[torch.Tensor],
    labels: torch.Tensor | None,
    numerics: Numerics,
    real_video: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor | None], int]:
    """The pixel D's keyword arguments for one micro-batch, and ``pb``, the samples decoded per group.

    ``latents``: groups of generator-space samples, each (b, C, T', H', W'), e.g. ``[real, fake]``
    for D or ``[samples]`` for G. The first ``pb = min(pixels.batch, b)`` of each group are decoded
    and the frames of ONE latent time slice drawn here are kept, so real and fake are compared on
    the same slice (:func:`~vidgen_core.train.fit_gan.pixel_view` decodes it in context). Returns
    ``pixels``: (len(latents)·pb, 3, T_px, H, W) in the run's memory format, groups in order, and
    ``pixel_labels``: (len(latents)·pb,) = ``labels[:pb]`` once per group, or None without labels.
    Gradients reach the latents through the decoder unless called under ``torch.no_grad()``.
    ``real_video`` (b, 3, T, H, W), the clips ``latents[0]`` encode: their own frames of slice t
    stand in for the decoding of ``latents[0]`` (``gan.pixel_d_real: clips``).
    Without ``pixels`` (no pixel D): ``({}, 0)``.
    """
    if pixels is None:
        return {}, 0
    pb, t = min(pixels.batch, latents[0].shape[0]), int(torch.randint(pixels.num_slices, ()))
    # With real_video, the real group's pixels are its own frames, not a decoding.
    to_decode = latents[1:] if real_video is not None else latents
    decoded = [pixels.decode(z[:pb], t) for z in to_decode]
    if real_video is not None:
        k = real_video.shape[2] // pixels.num_slices  # frames per latent time slice
        decoded.insert(0, real_video[:pb, :, t * k : (t + 1) * k].float())
    px = augment_pixels(torch.cat(decoded), pixels.augment)
    head = _head(labels, pb)
    pixel_labels = torch.cat([head] * len(latents)) if head is not None else None
    return {"pixels": numerics.to_input(px), "pixel_labels": pixel_labels}, pb


def discriminator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optim: Optim,
    reals: list[torch.Tensor],
    labels: list[torch.Tensor | None],
    numerics: Numerics,
    r1_gamma: float = 0.0,
    class_loss: float = 0.0,
    pixels: PixelView | None = None,
    real_videos: list[torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One D update on real samples (each (b, C, T', H', W')) vs fresh fakes; returns detached metrics.

    Real and fake go through D in ONE forward: a DDP module must not run forward
    twice before its backward. With ``r1_gamma > 0`` the loss adds
    ``r1_gamma / 2 · R1`` on the real half; with ``class_loss > 0`` (and labels)
    ``class_loss ·`` the cross-entropy of D's class head on the real half. With
    ``pixels``, the pixel D's hinge (and class) loss on decoded samples, times ``pixels.weight``;
    ``real_videos`` (the clips of each real micro-batch, (b, 3, T, H, W)) make its real half those
    clips' own frames instead of decoded real latents.
    """
    optim.zero_grad()
    noise_dim = unwrap(generator).noise_dim
    out: dict[str, torch.Tensor] = {}
    n = len(reals)
    for i, (real, y) in enumerate(zip(reals, labels)):
        b = real.shape[0]
        with no_sync(discriminator, i < n - 1):
            noise = torch.randn(b, noise_dim, device=real.device)
            with torch.no_grad(), numerics.autocast():
                fake = generator(noise, y)
            real_in = real.detach().requires_grad_(r1_gamma > 0)
            both = numerics.to_input(torch.cat([real_in, fake.to(real_in.dtype)]))
            classify = class_loss > 0 and y is not None
            with torch.no_grad():  # D's update: the decoder needs no graph
                video = real_videos[i] if real_videos is not None else None
                extra, pb = _pixel_inputs(pixels, [real.detach(), fake], y, numerics, video)
            with numerics.autocast():
                out_all = discriminator(both, _pair(y), with_class=classify, **extra)
            out_d, out_p = out_all if pixels is not None else (out_all, None)
            logits = _logits(out_d, classify)
            loss = hinge_d_loss(logits[:b], logits[b:])
            terms = {"loss_d": loss, "d_real": logits[:b].mean(), "d_fake": logits[b:].mean()}
            if classify:
                ce = F.cross_entropy(out_d[1][:b].float(), y)
                loss = loss + class_loss * ce
                terms["class_d"] = ce
            if out_p is not None:
                lp = _logits(out_p, classify)
                loss_p = hinge_d_loss(lp[:pb], lp[pb:])
                terms.update(loss_d_pixel=loss_p, d_real_pixel=lp[:pb].mean(), d_fake_pixel=lp[pb:].mean())
                if classify:
                    ce_p = F.cross_entropy(out_p[1][:pb].float(), y[:pb])
                    loss_p = loss_p + class_loss * ce_p
                    terms["class_d_pixel"] = ce_p
                loss = loss + pixels.weight * loss_p
            if r1_gamma > 0:
                r1 = r1_penalty(logits[:b], real_in)
                loss = loss + 0.5 * r1_gamma * r1
                terms["r1"] = r1
            optim.backward(loss)
        for k, v in terms.items():
            out[k] = out.get(k, 0.0) + v.detach() / n
    out["grad_norm_d"] = optim.step()
    return out


def generator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optim: Optim,
    batch_size: int,
    labels: list[torch.Tensor | None],
    numerics: Numerics,
    mode_seeking: float = 0.0,
    class_loss: float = 0.0,
    pixels: PixelView | None = None,
) -> dict[str, torch.Tensor]:
    """One G update against the current D over ``len(labels)`` micro-batches of ``batch_size``.

    D's parameters also receive gradients here; they are discarded (the D step
    zeroes them first), so D skips DDP's all-reduce (``no_sync``) in this step.
    With ``mode_seeking > 0``, G also draws a second noise for the first half of
    the batch (same labels), in the same forward pass (DDP allows one per
    backward), and the loss adds ``mode_seeking`` times the mode-seeking penalty.
    With ``class_loss > 0`` (and labels) it adds ``class_loss ·`` the
    cross-entropy of D's class head on the samples against their labels. With ``pixels``,
    the first ``pixels.batch`` samples are also decoded and the pixel D's losses added.
    """
    optim.zero_grad()
    noise_dim = unwrap(generator).noise_dim
    device = next(unwrap(generator).parameters()).device
    loss_sum = torch.zeros((), device=device)
    ms_sum = torch.zeros((), device=device)
    ce_sum = torch.zeros((), device=device)
    n = len(labels)
    half = batch_size // 2 if mode_seeking > 0 else 0
    for i, y in enumerate(labels):
        with no_sync(generator, i < n - 1), no_sync(discriminator, True):
            noise = torch.randn(batch_size + half, noise_dim, device=device)
            y_all = torch.cat([y, y[:half]]) if y is not None and half else y
            classify = class_loss > 0 and y is not None
            with numerics.autocast():
                samples = generator(noise, y_all)
            # G's own batch only (not the mode-seeking extras); its gradient flows through the decoder.
            extra, pb = _pixel_inputs(pixels, [samples[:batch_size]], y, numerics)
            with numerics.autocast():
                out_all = discriminator(numerics.to_input(samples[:batch_size]), y, with_class=classify, **extra)
            out_d, out_p = out_all if pixels is not None else (out_all, None)
            loss = hinge_g_loss(_logits(out_d, classify))
            if classify:
                ce = F.cross_entropy(out_d[1].float(), y)
                loss = loss + class_loss * ce
                ce_sum = ce_sum + ce.detach() / n
            if out_p is not None:
                loss_p = hinge_g_loss(_logits(out_p, classify))
                if classify:
                    loss_p = loss_p + class_loss * F.cross_entropy(out_p[1].float(), y[:pb])
                loss = loss + pixels.weight * loss_p
            if half:
                ms = mode_seeking_penalty(samples[:half].float(), samples[batch_size:].float(), noise[:half], noise[batch_size:])
                loss = loss + mode_seeking * ms
                ms_sum = ms_sum + ms.detach() / n
            optim.backward(loss)
        loss_sum = loss_sum + loss.detach() / n
    out = {"loss_g": loss_sum, "grad_norm_g": optim.step()}
    if half:
        out["mode_seeking"] = ms_sum
    if class_loss > 0 and labels[0] is not None:
        out["class_g"] = ce_sum
    return out
