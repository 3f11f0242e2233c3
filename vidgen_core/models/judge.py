"""The judge network: a small video classifier used to score generated clips (torch only).

Trained and used by :mod:`vidgen_core.eval.judge`; lives here so a saved judge
(``kind: judge``) is rebuilt like every other model.
Shapes: clips uint8 (B, T, H, W, 3); features (B, F); logits (B, K).
"""

from __future__ import annotations

import torch
from torch import nn

from vidgen_core.models.vae import frames_to_video


class VideoJudge(nn.Module):
    """uint8 clips (B, T, H, W, 3) -> logits (B, num_classes); :meth:`features` -> (B, num_features).

    Three 3D-conv stages (stride 2 in space, 1 then 2 in time), global average
    pooling, and a linear head. Its channels are few on purpose: it must train
    in seconds on a CPU as part of every workflow run.
    """

    def __init__(self, num_classes: int, width: int = 32, standardise: bool = True) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a judge needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        self.width = width
        self.standardise = standardise
        self.num_features = 2 * width
        self.body = nn.Sequential(
            nn.Conv3d(3, width // 2, 3, stride=(1, 2, 2), padding=1), nn.SiLU(),
            nn.Conv3d(width // 2, width, 3, stride=(1, 2, 2), padding=1), nn.SiLU(),
            nn.Conv3d(width, 2 * width, 3, stride=(2, 2, 2), padding=1), nn.SiLU(),
            nn.Conv3d(2 * width, 2 * width, 3, padding=1), nn.SiLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def features_of_video(self, x: torch.Tensor) -> torch.Tensor:
        """x float (B, 3, T, H, W) in [-1, 1] -> pooled features (B, num_features)."""
        if self.standardise:
            x = standardise_clips(x)
        return self.body(x).mean(dim=(2, 3, 4))

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 clips (B, T, H, W, 3) -> features (B, num_features)."""
        return self.features_of_video(frames_to_video(clips, _device(self)))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 clips (B, T, H, W, 3) -> logits (B, num_classes)."""
        return self.head(self.features(clips))


class JudgeEnsemble(nn.Module):
    """Several :class:`VideoJudge` trained alike but for their seed; uint8 clips (B, T, H, W, 3) ->
    logits (B, num_classes) whose softmax is the members' mean probability.

    One judge's verdict on generated clips moves with its seed (the default recipe's GAN samples:
    class consistency 0.81-0.90 under three seeds), so the class consistency is the ensemble's.
    :meth:`features` are the first member's: the Fréchet distance needs few dimensions for its
    ~100 samples, and one judge's space is as good a yardstick as another's.
    """

    def __init__(self, members: list[VideoJudge]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a judge ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.num_classes = members[0].num_classes
        self.num_features = members[0].num_features

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 clips (B, T, H, W, 3) -> the first member's features (B, num_features)."""
        return self.members[0].features(clips)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 clips (B, T, H, W, 3) -> log of the members' mean class probabilities (B, num_classes)."""
        x = frames_to_video(clips, _device(self))
        probs = torch.stack([m.head(m.features_of_video(x)).softmax(dim=1) for m in self.members])
        return probs.mean(dim=0).log()


def standardise_clips(x: torch.Tensor, floor: float = 0.05) -> torch.Tensor:
    """Each clip's channels to zero mean and unit deviation over (T, H, W): (B, 3, T, H, W) -> same.

    The mean is mostly the background, the deviation mostly how much of the frame the object
    covers and how far its colour is from the background's; both vary per video and say nothing
    of the shape. ``floor`` is added to the deviation so a flat clip is not amplified into noise.
    """
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    return (x - mean) / (x.std(dim=(2, 3, 4), keepdim=True) + floor)


def _device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")
