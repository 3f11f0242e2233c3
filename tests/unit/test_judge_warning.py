"""A weak judge is said to be weak beside the GAN figures it produced."""

from __future__ import annotations

from vidgen_core.config import EvalConfig
from vidgen_core.eval.judge import reliability_warning
from workflows.report import headline_lines


def _evaluate_outputs(judge_accuracy: float) -> dict:
    ev = {"num_test_clips": 4, "vae_compression": 24.0, "vae_psnr": 25.0, "vae_ssim": 0.86, "vae_colour_ratio": 0.93,
          "baseline_psnr": 19.0, "baseline_ssim": 0.74, "gan_feature_space": "judge", "eval_num_samples": 4,
          "eval_seeds": 3, "judge_test_accuracy": judge_accuracy}
    for s in ("gan", "real", "prior"):
        ev.update({f"{s}_fd": 100.0, f"{s}_class_consistency": 0.8, f"{s}_colour_ratio": 0.8})
    warning = reliability_warning(judge_accuracy, EvalConfig().min_judge_accuracy)
    if warning is not None:
        ev["judge_warning"] = warning
    return ev


def test_the_floor_is_where_the_warning_starts() -> None:
    assert reliability_warning(0.63, 0.8) is not None and "63%" in reliability_warning(0.63, 0.8)
    assert reliability_warning(0.8, 0.8) is None
    assert reliability_warning(None, 0.8) is None  # no judge (unlabelled data): nothing to say here
    assert reliability_warning(float("nan"), 0.8) is None  # no test clips: accuracy unknown, not low


def test_the_summary_warns_under_a_weak_judge_only() -> None:
    weak = headline_lines(_evaluate_outputs(0.63))
    assert weak[-1].startswith("  warning: the judge recognises only 63% of the real test clips"), weak
    assert not any("warning" in line for line in headline_lines(_evaluate_outputs(0.88)))
