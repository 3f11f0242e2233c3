"""Registry policy: gates, the champion comparison, one decision per case (hand-computed)."""

from __future__ import annotations

from vidgen_core.config import RegisterConfig
from vidgen_core.tracking.promotion import Champion, decide, gate_failures

GOOD = {
    "vae_psnr": 22.0, "baseline_psnr": 19.0, "vae_ssim": 0.7, "baseline_ssim": 0.6, "vae_colour_ratio": 0.95,
    "gan_diversity_ratio": 0.5, "gan_fd": 1.0, "prior_fd": 4.0,
}


def test_gates_use_the_psnr_gain_and_the_metric_bounds() -> None:
    cfg = RegisterConfig(min_psnr_gain_db=2.0, min_metrics={"vae_ssim": 0.8}, max_metrics={"gan_diversity_ratio": 0.4})
    failures = gate_failures(GOOD, cfg)
    assert failures == ["vae_ssim 0.7 < 0.8", "gan_diversity_ratio 0.5 > 0.4"]  # gain 3.0 >= 2.0 passes
    assert gate_failures({**GOOD, "vae_psnr": 20.5}, RegisterConfig(min_psnr_gain_db=2.0))[0].startswith(
        "VAE PSNR gain over the mean-frame baseline 1.5 dB < 2.0 dB"
    )
    assert gate_failures({"vae_psnr": 22.0}, RegisterConfig())  # a missing metric never passes a gate


def test_first_version_that_passes_becomes_champion() -> None:
    d = decide(GOOD, RegisterConfig(), None, "1")
    assert d.gate_passed and d.promote and "first version" in d.reason


def test_failed_gate_moves_nothing() -> None:
    d = decide({**GOOD, "vae_psnr": 18.0}, RegisterConfig(), Champion("1", 21.0), "2")
    assert not d.gate_passed and not d.promote and d.reason.startswith("gates failed")


def test_champion_moves_only_on_a_large_enough_improvement() -> None:
    cfg = RegisterConfig(min_improvement=0.5)
    assert decide(GOOD, cfg, Champion("1", 21.0), "2").promote  # +1.0 dB
    stay = decide(GOOD, cfg, Champion("1", 21.8), "2")  # +0.2 dB < 0.5
    assert stay.gate_passed and not stay.promote and "champion stays v1" in stay.reason
    assert not decide(GOOD, RegisterConfig(), Champion("1", 22.0), "2").promote  # a tie is not a win


def test_lower_is_better_flips_the_comparison() -> None:
    cfg = RegisterConfig(champion_metric="gan_fd", greater_is_better=False)
    metrics = {**GOOD, "gan_fd": 4.0, "prior_fd": 9.0}
    assert decide(metrics, cfg, Champion("3", 6.0), "4").promote
    assert not decide(metrics, cfg, Champion("3", 3.0), "4").promote


def test_re_deciding_for_the_champion_itself_keeps_it() -> None:
    d = decide(GOOD, RegisterConfig(), Champion("2", 22.0), "2")
    assert d.gate_passed and not d.promote and "already champion" in d.reason


def test_the_gan_beats_the_prior_on_each_chosen_figure() -> None:
    # The tiny recipe's case: the Fréchet distance of 45 clips says prior, precision and recall say GAN.
    noisy = {**GOOD, "gan_fd": 7913.0, "prior_fd": 7103.0, "gan_precision": 0.66, "prior_precision": 0.31,
             "gan_recall": 0.27, "prior_recall": 0.02}
    assert gate_failures(noisy, RegisterConfig()) == ["GAN Fréchet distance 7913 not below the VAE-prior baseline's 7103"]
    assert gate_failures(noisy, RegisterConfig(gan_prior_metrics=["precision", "recall"])) == []
    worse = {**noisy, "gan_recall": 0.02}  # a tie is not a win
    assert gate_failures(worse, RegisterConfig(gan_prior_metrics=["precision", "recall"])) == [
        "GAN recall 0.02 not above the VAE-prior baseline's 0.02"]
    assert gate_failures(noisy, RegisterConfig(gan_must_beat_prior=False)) == []
