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


def test_a_class_the_judge_misses_is_named_even_when_overall_accuracy_passes() -> None:
    from vidgen_core.eval.judge import weak_classes_warning

    # Run 16's judge: 0.87 of the test clips overall, but 1 of 13 squares.
    by_class = {"circle": (1.0, 43), "cross": (1.0, 16), "square": (1 / 13, 13), "triangle": (0.94, 32)}
    warning = weak_classes_warning(by_class, 0.8)
    assert warning is not None and warning.startswith("the judge recognises only 8% of the 13 real test clips of 'square' (")
    assert "circle" not in warning and "triangle" not in warning
    assert weak_classes_warning({**by_class, "square": (0.8, 13)}, 0.8) is None
    assert weak_classes_warning({"square": (0.0, 0)}, 0.8) is None  # no test clips of it: nothing measured
    assert weak_classes_warning(None, 0.8) is None  # a judge step cached before per-class figures existed
    ev = _evaluate_outputs(0.87) | {"judge_class_warning": warning}
    assert headline_lines(ev)[-1] == f"  warning: {warning}"


def test_accuracy_by_class_counts_each_class_apart() -> None:
    import numpy as np
    import torch

    from vidgen_core.eval.judge import accuracy_by_class

    class Fixed(torch.nn.Module):
        """Answers class 0 for every clip: (B, T, H, W, 3) uint8 -> logits (B, 3)."""

        num_classes = 3

        def forward(self, clips: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[5.0, 0.0, 0.0]]).expand(len(clips), 3)

    clips = np.zeros((5, 2, 4, 4, 3), np.uint8)
    labels = np.array([0, 0, 1, 1, 1])
    assert accuracy_by_class(Fixed(), clips, labels, ["a", "b", "c"]) == {"a": (1.0, 2), "b": (0.0, 3)}
    assert accuracy_by_class(Fixed(), clips[:0], labels[:0], ["a", "b", "c"]) == {}


def test_class_names_become_valid_metric_keys() -> None:
    from vidgen_core.tracking.artifacts import metric_key

    assert metric_key("triangle") == "triangle"
    assert metric_key("car (red)") == "car _red_"
    assert metric_key("vélo/2") == "v_lo/2"
