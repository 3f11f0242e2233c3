"""The latent GAN encodes each distinct training clip once and gets exactly the encoder's latents back."""

from __future__ import annotations

import numpy as np
import torch

from vidgen_core.train.latent_cache import LatentCache


def _encoder():
    calls: list[int] = []

    def encode(clips: np.ndarray) -> torch.Tensor:  # (b, T, H, W, 3) uint8 -> (b, 2, T, 1, 1)
        calls.append(len(clips))
        x = torch.as_tensor(clips).float()
        return torch.stack([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1)[..., None, None]

    return encode, calls


def test_each_distinct_clip_is_encoded_once_and_latents_match():
    encode, calls = _encoder()
    cache = LatentCache(encode)
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (6, 4, 5, 5, 3), dtype=np.uint8)
    first = cache(clips[:4])
    assert calls == [1, 1, 1, 1]  # one clip per call: a latent never depends on its batch-mates
    again = cache(torch.as_tensor(clips[[5, 3, 1, 4]]))  # a tensor batch, two seen and two new clips
    assert len(calls) == 6  # only the two new ones were encoded
    assert torch.equal(again, encode(clips[[5, 3, 1, 4]]))
    assert torch.equal(first, encode(clips[:4]))
    assert (cache.hits, cache.misses) == (2, 6)


def test_a_full_store_still_returns_every_latent():
    encode, calls = _encoder()
    cache = LatentCache(encode, max_bytes=2 * 2 * 4 * 4)  # room for two latents of (2, 4, 1, 1) float32
    clips = np.random.default_rng(1).integers(0, 256, (3, 4, 2, 2, 3), dtype=np.uint8)
    assert torch.equal(cache(clips), encode(clips))
    assert cache.bytes == 2 * 2 * 4 * 4
    cache(clips)
    n = len(calls)
    cache(clips)
    assert len(calls) == n + 1  # the clip that did not fit is encoded again, the two stored ones are not
