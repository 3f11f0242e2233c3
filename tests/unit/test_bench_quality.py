"""bench/quality.py keeps a retrained VAE as a work dir that its GAN loop (and vidgen's loader) reads."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import torch

from vidgen_core.config import PipelineConfig, VAEConfig
from vidgen_core.models.io import load_model
from vidgen_core.models.vae import VideoVAE

QUALITY = Path(__file__).resolve().parents[2] / "bench" / "quality.py"


def _quality() -> SimpleNamespace:
    return SimpleNamespace(**runpy.run_path(str(QUALITY), run_name="bench_quality"))


def test_saved_vae_is_the_new_workdirs_newest_and_shares_the_source_clips_and_judge(tmp_path):
    quality = _quality()
    source = tmp_path / "run"
    (source / "steps" / "ingest-abc" / "shards").mkdir(parents=True)
    (source / "steps" / "train_judge-def" / "judge").mkdir(parents=True)
    cfg = PipelineConfig(vae=VAEConfig(base_channels=4, channel_mult=[1], latent_channels=2))
    torch.manual_seed(0)
    vae = VideoVAE(cfg.vae).to(memory_format=torch.channels_last_3d)  # as the trainer prepares it

    saved = quality.save_as_workdir(vae, cfg, source, tmp_path / "new", steps=123)

    dest = tmp_path / "new"
    assert Path(quality.newest(dest, "train_vae", "model")) == saved
    assert Path(quality.newest(dest, "ingest", "shards")).resolve() == (source / "steps" / "ingest-abc" / "shards").resolve()
    assert Path(quality.newest(dest, "train_judge", "judge")).resolve() == (source / "steps" / "train_judge-def" / "judge").resolve()
    loaded, doc = load_model(saved)
    extra = doc["extra"]
    assert extra["steps"] == 123 and extra["clip_len"] == cfg.ingest.clip_len
    assert tuple(extra["latent_shape"]) == vae.latent_shape(cfg.ingest.clip_len, cfg.ingest.size)
    x = torch.rand(1, 3, cfg.ingest.clip_len, cfg.ingest.size, cfg.ingest.size) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x, sample=False).recon, vae.eval()(x, sample=False).recon, atol=1e-5)
    # Saving again into the same dir (another run of the bench) does not fail on the existing links.
    quality.save_as_workdir(vae, cfg, source, dest, steps=123)
