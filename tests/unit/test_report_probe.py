"""The closing summary of `vidgen run` prints the probe figures and the registered probe (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

from workflows.executor import PipelineResult, StepRecord
from workflows.report import print_summary


def _result(probe: dict) -> PipelineResult:
    ev = {"vae_psnr": 30.0, "vae_ssim": 0.9, "baseline_psnr": 20.0, "baseline_ssim": 0.5, "num_test_clips": 8}
    reg = {"gate_passed": True, "champion_moved": True, "is_champion": True, "decision": "first version",
           **{k: {"name": f"vidgen-{k}", "version": "1", "model_uri": f"models:/vidgen-{k}/1"} for k in ("vae", "gan")}}
    if "model_dir" in probe:
        reg["probe"] = {"name": "vidgen-probe", "version": "1", "model_uri": "models:/vidgen-probe/1"}
    steps = {name: StepRecord(name, "fp", "run", False, 1.0, out)
             for name, out in (("evaluate", ev), ("train_probe", probe), ("register", reg))}
    return PipelineResult("p", "sqlite:////tmp/x.db", "0", steps, 3.0)


def test_summary_prints_probe_figures_and_version(capsys) -> None:
    probe = {"model_dir": "/m", "probe_latent_accuracy": 0.9, "probe_pixel_accuracy": 0.3,
             "retrieval_latent_recall_at_5": 0.95, "retrieval_pixel_recall_at_5": 0.7,
             "retrieval_latent_map": 0.6, "retrieval_pixel_map": 0.3, "embed_clips_per_s": 120.0}
    print_summary(_result(probe), Path("/tmp"))
    out = capsys.readouterr().out
    assert "probe test accuracy latents 0.900 vs pixels 0.300" in out
    assert "registered vidgen-probe version 1 @candidate @champion" in out


def test_summary_says_why_the_probe_was_skipped(capsys) -> None:
    print_summary(_result({"skipped": "a probe needs labelled clips of >= 2 classes; the shard set has []"}), Path("/tmp"))
    out = capsys.readouterr().out
    assert "probe skipped: a probe needs labelled clips" in out and "vidgen-probe" not in out
