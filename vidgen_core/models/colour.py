"""A fixed brightness/colour basis for video pixels (torch only).

Why: in the moving-shapes data (and in most footage) brightness carries ~95 % of
the pixel variance and the two colour-difference axes ~5 %. Under a plain RGB
L2 loss the few latent channels fill with brightness and shape first and colour
is dropped (objects decode grey). Encoding, decoding and scoring in an
orthonormal brightness/colour basis whose colour axes are scaled up by
``colour_weight`` makes colour errors cost as much as brightness errors, so the
latent keeps it.

    Y  = (R + G + B) / sqrt(3)              brightness
    C1 = (R - G) / sqrt(2)          * k     red-green
    C2 = (R + G - 2B) / sqrt(6)     * k     yellow-blue

With ``k = 1`` the basis is a rotation: an L2 loss in it equals the RGB L2 loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_ROWS = (
    (1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)),
    (1 / math.sqrt(2), -1 / math.sqrt(2), 0.0),
    (1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)),
)


class ColourBasis(nn.Module):
    """RGB video (B, 3, ...) <-> scaled brightness/colour video (B, 3, ...); no parameters.

    The matrix is a non-persistent buffer: it moves with ``.to(device)`` but is
    not in the state dict, so weights files stay what they were.
    """

    def __init__(self, colour_weight: float = 1.0) -> None:
        super().__init__()
        if colour_weight <= 0:
            raise ValueError(f"colour_weight must be > 0, got {colour_weight}")
        rot = torch.tensor(_ROWS, dtype=torch.float32)
        scale = torch.tensor([1.0, colour_weight, colour_weight])
        self.register_buffer("forward_matrix", scale[:, None] * rot, persistent=False)
        # Inverse of diag(scale) @ rot = rot.T @ diag(1 / scale) (rot is orthonormal).
        self.register_buffer("inverse_matrix", rot.T / scale[None, :], persistent=False)

    @staticmethod
    def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, ...) pixels, got shape {tuple(x.shape)}")
        return torch.einsum("oc,bc...->bo...", matrix.to(x.dtype), x)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB (B, 3, ...) -> basis (B, 3, ...): brightness, then the two scaled colour axes."""
        return self._mix(self.forward_matrix, rgb)

    def inverse(self, basis: torch.Tensor) -> torch.Tensor:
        """Basis (B, 3, ...) -> RGB (B, 3, ...)."""
        return self._mix(self.inverse_matrix, basis)
