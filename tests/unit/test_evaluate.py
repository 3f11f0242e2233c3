"""evaluate_vae with a fake test split (monkeypatched loader) and known VAEs."""

from __future__ import annotations

import math
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from vidgen_core.config import EvalConfig, VAEConfig
from vidgen_core.errors import UserError
from vidgen_core.eval.evaluate import evaluate_vae
from vidgen_core.eval.metrics import MAX_PSNR_DB, mean_frame_baseline, psnr, ssim


class ShiftVAE(nn.Module):
    """Returns its input shifted by ``shift`` uint8 levels: a VAE with a known error."""

    def __init__(self, shift: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(shift / 127.5), requires_grad=False)
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor, sample: bool = True) -> SimpleNamespace:
        assert not sample, "evaluation must decode the posterior mean"
        assert not torch.is_grad_enabled(), "evaluation must run under no_grad"
        self.calls.append(x.shape[0])
        return SimpleNamespace(recon=x + self.shift)

    def latent_dims(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """An identity "latent": no compression, (C, T, H, W) = the input's."""
        return (3, frames, height, width)


@pytest.fixture
def test_split(monkeypatch):
    """Five test clips (values in [20, 230)) served by a fake vidgen_core.data.readers."""
    clips = np.random.default_rng(0).integers(20, 230, (5, 4, 16, 16, 3), dtype=np.uint8)
    calls = []

    def load_clips(shard_dir: str, split: str, limit: int | None = None):
        calls.append((shard_dir, split, limit))
        frames = clips if split == "test" else clips[:0]
        frames = frames[:limit] if limit is not None else frames
        return frames, np.zeros(len(frames), dtype=np.int64)

    fake = types.ModuleType("vidgen_core.data.readers")
    fake.load_clips = load_clips
    monkeypatch.setitem(sys.modules, "vidgen_core.data.readers", fake)
    return SimpleNamespace(clips=clips, calls=calls)


def _fake_loader(monkeypatch, model: nn.Module) -> None:
    import vidgen_core.models.io as io

    monkeypatch.setattr(io, "load_model", lambda model_dir, device="cpu": (model.to(device), {"kind": "vae"}))


def test_identity_vae_scores_the_cap_and_baseline_is_exact(monkeypatch, test_split):
    model = ShiftVAE(0)
    _fake_loader(monkeypatch, model)
    out = evaluate_vae("/m", "/shards", EvalConfig(max_test_clips=100, batch_size=2))
    assert test_split.calls == [("/shards", "test", 100)]
    assert model.calls == [2, 2, 1]  # batched, last batch partial
    assert out["num_test_clips"] == 5
    assert out["vae_psnr"] == MAX_PSNR_DB
    assert out["vae_ssim"] == pytest.approx(1.0)
    base = mean_frame_baseline(test_split.clips)
    assert out["baseline_psnr"] == pytest.approx(psnr(base, test_split.clips))
    assert out["baseline_ssim"] == pytest.approx(ssim(base, test_split.clips))
    assert out["baseline_psnr"] < 20  # random frames: the mean frame is a poor codec


def test_shifted_vae_psnr_matches_hand_value(monkeypatch, test_split):
    _fake_loader(monkeypatch, ShiftVAE(10))
    out = evaluate_vae("/m", "/shards", EvalConfig(max_test_clips=3, batch_size=16))
    assert out["num_test_clips"] == 3  # max_test_clips is passed on as the limit
    assert out["vae_psnr"] == pytest.approx(20 * math.log10(255 / 10), abs=1e-5)
    assert 0 < out["vae_ssim"] < 1


def test_real_vae_from_a_saved_directory(tmp_path, test_split):
    from vidgen_core.models.io import save_model
    from vidgen_core.models.vae import VideoVAE

    cfg = VAEConfig(base_channels=4, channel_mult=[1], latent_channels=2)
    torch.manual_seed(0)
    save_model(VideoVAE(cfg), "vae", cfg.model_dump(), tmp_path / "vae", extra={"clip_len": 4, "size": 16})
    out = evaluate_vae(str(tmp_path / "vae"), "/shards", EvalConfig(max_test_clips=4, batch_size=3))
    assert {"vae_psnr", "vae_ssim", "vae_colour_ratio", "vae_compression", "baseline_psnr", "baseline_ssim",
            "num_test_clips"} <= set(out)
    assert out["vae_compression"] == 4 * 16 * 16 * 3 / (2 * 2 * 4 * 4)  # latent (2, T/2, H/4, W/4)
    assert out["num_test_clips"] == 4
    for key in ("vae_psnr", "vae_ssim", "baseline_psnr", "baseline_ssim"):
        assert isinstance(out[key], float) and math.isfinite(out[key])
    assert 0 < out["vae_psnr"] < MAX_PSNR_DB


def test_no_test_clips_is_a_one_line_user_error(monkeypatch, test_split):
    _fake_loader(monkeypatch, ShiftVAE(0))
    empty = (np.zeros((0, 4, 16, 16, 3), np.uint8), np.zeros(0, np.int64))
    # The fake module is this test's own (monkeypatched into sys.modules).
    sys.modules["vidgen_core.data.readers"].load_clips = lambda shard_dir, split, limit=None: empty
    with pytest.raises(UserError) as err:
        evaluate_vae("/m", "/shards", EvalConfig())
    assert "no test clips" in str(err.value) and "\n" not in str(err.value)
