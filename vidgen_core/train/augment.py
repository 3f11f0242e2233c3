"""Random symmetries of video clips for training (torch only): the VAE's clips, the pixel D's frames.

A codec should reconstruct a clip and its mirror image, its time-reversed
copy or its colour-permuted copy equally well. Training on them closes the
train/test gap of small data sets and, with ``rgb_permute``, shows the model
colours the train split lacks (the splits are per video, so a test video's
colours are new).

The draws depend on (seed, step, global sample index) only, like
:func:`~vidgen_core.train.loop.batch_noise`: 2 workers × b and 1 worker × 2b
augment the same sample the same way.
"""

from __future__ import annotations

import itertools

import torch

from vidgen_core.train.loop import dist_rank, dist_world_size

_PERMUTATIONS = list(itertools.permutations(range(3)))
_KINDS = ("hflip", "vflip", "transpose", "reverse", "rgb_permute")


def augment_batch(
    x: torch.Tensor, kinds: list[str] | tuple[str, ...], seed: int, step: int, micro: int = 0, accum: int = 1
) -> torch.Tensor:
    """Apply the symmetries in ``kinds`` at random, per sample: x (b, 3, T, H, W) -> same shape.

    Each named symmetry is applied to each sample with probability 1/2
    (``rgb_permute``: one of the 6 channel orders, uniformly); ``transpose``
    swaps H and W and needs square frames (skipped otherwise).
    """
    unknown = set(kinds) - set(_KINDS)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}, expected some of {_KINDS}")
    if not kinds:
        return x
    b = x.shape[0]
    world, rank = dist_world_size(), dist_rank()
    g = torch.Generator().manual_seed((seed * 2_654_435_761 + step * 40_503 + 17) % (2**63))
    total = accum * world * b
    coins = torch.randint(0, 2, (total, 4), generator=g).bool()
    perms = torch.randint(0, len(_PERMUTATIONS), (total,), generator=g)
    start = (micro * world + rank) * b
    coins, perms = coins[start : start + b], perms[start : start + b]
    square = x.shape[3] == x.shape[4]
    out = []
    for i in range(b):
        clip = x[i]  # (3, T, H, W)
        if "hflip" in kinds and coins[i, 0]:
            clip = clip.flip(3)
        if "vflip" in kinds and coins[i, 1]:
            clip = clip.flip(2)
        if "transpose" in kinds and square and coins[i, 2]:
            clip = clip.transpose(2, 3)
        if "reverse" in kinds and coins[i, 3]:
            clip = clip.flip(1)
        if "rgb_permute" in kinds:
            clip = clip[list(_PERMUTATIONS[int(perms[i])])]
        out.append(clip)
    return torch.stack(out).contiguous()


def augment_pixels(px: torch.Tensor, kinds: tuple[str, ...]) -> torch.Tensor:
    """Random symmetries per sample, differentiable: frames (N, 3, T, H, W) -> same shape.

    ``rgb_permute``: one of the 6 channel orders; ``hflip``: a mirror image with probability 1/2.
    Applied to real and generated frames alike before the pixel D (DiffAugment, Zhao et al. 2020):
    colours are drawn per video, so a D that may look at hue learns which training video (hence
    which class) a colour belongs to, and G then paints a class's colours instead of its shape.
    Draws from torch's global generator, which fit_gan seeds per step (a resumed run draws alike).
    """
    if not kinds:
        return px
    n = px.shape[0]
    if "rgb_permute" in kinds:
        order = torch.tensor(_PERMUTATIONS)[torch.randint(len(_PERMUTATIONS), (n,))].to(px.device)
        px = torch.gather(px, 1, order[:, :, None, None, None].expand_as(px))
    if "hflip" in kinds:
        flip = (torch.rand(n) < 0.5).to(px.device)
        px = torch.where(flip[:, None, None, None, None], px.flip(4), px)
    return px
