"""Lossless coding of quantised latents with constriction's range coder.

One :class:`LatentCoder` follows one video: it keeps the last two decoded
latent frames (the context, see :mod:`vidgen_core.codec.context`), so windows
must be coded and decoded in order. Per window and channel the encoder picks
a mode (intra / temporal) and a scale multiplier (forward adaptation to the
content, 1 + 3 bits of side information); the symbols then go through a
rounded Laplace whose scale is the prior's for (quality, mode, channel,
bucket) times that multiplier.

Stream order, per window: side information ``(mode, multiplier)`` for every
channel, then for each latent frame ``t`` and channel ``c`` the ``H'·W'``
residuals ``q - prediction``. The decoder rebuilds exactly the same
predictions and scales from the frames it has decoded, so the round trip is
exact.
"""

from __future__ import annotations

import constriction
import numpy as np

from vidgen_core.codec.context import MODES, buckets, laplace_bits, prediction
from vidgen_core.codec.prior import Prior

MULTIPLIERS = 2.0 ** ((np.arange(8) - 4) / 2.0)  # 0.25 .. 2.83: side information picks one
_model = constriction.stream.model


class LatentCoder:
    """Codes the windows of one video, in order, at one quality."""

    def __init__(self, prior: Prior, quality: int) -> None:
        self.prior = prior
        self.quality = prior.check_quality(quality)
        lim = 2 * prior.limit(quality)  # residual of two clipped symbols
        self._family = _model.QuantizedLaplace(-lim, lim)
        self._mode_model = _model.Uniform(MODES)
        self._mult_model = _model.Uniform(len(MULTIPLIERS))
        self._prev1: np.ndarray | None = None  # (C, H', W') int32: last decoded latent frame
        self._prev2: np.ndarray | None = None

    def _table(self, mode: int, ch: int) -> np.ndarray:
        return self.prior.scales[self.quality, mode, ch]

    def _advance(self, frame: np.ndarray) -> None:
        self._prev2, self._prev1 = self._prev1, frame

    # ------------------------------------------------------------- encoding

    def encode_window(self, encoder: constriction.stream.queue.RangeEncoder, q: np.ndarray) -> None:
        """Append one window's symbols ``q`` (int32 ``(C, T', H', W')``) to ``encoder``."""
        c, t_len = q.shape[0], q.shape[1]
        if c != self.prior.channels:
            raise ValueError(f"latents have {c} channels, the prior {self.prior.channels}")
        # Residuals and base scales under both modes (the context does not depend on the mode chosen).
        resid = np.empty((MODES, *q.shape), dtype=np.int32)
        base = np.empty((MODES, *q.shape), dtype=np.float64)
        prev1, prev2 = self._prev1, self._prev2
        for t in range(t_len):
            cur = q[:, t]
            for mode in range(MODES):
                resid[mode, :, t] = cur - prediction(mode, prev1, cur.shape)
                b = buckets(mode, prev1, prev2, cur.shape)
                for ch in range(c):
                    base[mode, ch, t] = self._table(mode, ch)[b[ch]]
            prev2, prev1 = prev1, cur
        # Pick (mode, multiplier) per channel by ideal code length.
        choice = []
        r_abs = np.abs(resid)
        for ch in range(c):
            costs = np.array([[laplace_bits(r_abs[m, ch], base[m, ch] * k).sum() for k in MULTIPLIERS] for m in range(MODES)])
            m, k = np.unravel_index(int(np.argmin(costs)), costs.shape)
            choice.append((int(m), int(k)))
            encoder.encode(int(m), self._mode_model)
            encoder.encode(int(k), self._mult_model)
        for t in range(t_len):
            for ch, (m, k) in enumerate(choice):
                sym = resid[m, ch, t].ravel()
                encoder.encode(sym, self._family, np.zeros(sym.size), base[m, ch, t].ravel() * MULTIPLIERS[k])
            self._advance(q[:, t].copy())

    # ------------------------------------------------------------- decoding

    def decode_window(self, decoder: constriction.stream.queue.RangeDecoder, shape: tuple[int, int, int, int]) -> np.ndarray:
        """The next window's symbols, int32 ``shape`` = ``(C, T', H', W')``."""
        c, t_len, h, w = shape
        choice = [(int(decoder.decode(self._mode_model)), int(decoder.decode(self._mult_model))) for _ in range(c)]
        q = np.empty(shape, dtype=np.int32)
        for t in range(t_len):
            for ch, (m, k) in enumerate(choice):
                prev1 = None if self._prev1 is None else self._prev1[ch]
                prev2 = None if self._prev2 is None else self._prev2[ch]
                b = buckets(m, prev1, prev2, (h, w))
                scale = self._table(m, ch)[b].ravel() * MULTIPLIERS[k]
                r = decoder.decode(self._family, np.zeros(h * w), scale)
                q[ch, t] = prediction(m, prev1, (h, w)) + r.reshape(h, w)
            self._advance(q[:, t].copy())
        return q
