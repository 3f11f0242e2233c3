"""train_judge: learns a class that survives its augmentations, with the settings it is given."""

from __future__ import annotations

import numpy as np

from vidgen_core.config import JudgeConfig
from vidgen_core.eval.judge import train_judge


def _clips(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 1: a bright square in the middle; class 0: none. uint8 (n, 4, 8, 8, 3), labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    clips = rng.integers(0, 40, size=(n, 4, 8, 8, 3), dtype=np.uint8)
    clips[labels == 1, :, 2:6, 2:6, :] = 230
    return clips, labels


def test_train_judge_uses_its_config_and_separates_the_classes() -> None:
    train, test = _clips(16, 0), _clips(8, 1)
    result = train_judge(*train, 2, JudgeConfig(steps=80, batch_size=8, width=8, ensemble=1), test=test)
    assert result.steps == 80
    assert result.judge.head.out_features == 2
    assert result.train_accuracy == 1.0 and result.test_accuracy == 1.0


def test_train_judge_reports_each_class_from_the_same_test_pass() -> None:
    train, test = _clips(16, 0), _clips(8, 1)
    result = train_judge(*train, 2, JudgeConfig(steps=80, batch_size=8, width=8), test=test, names=["plain", "square"])
    assert result.test_by_class == {"plain": (1.0, 4), "square": (1.0, 4)}
    unnamed = train_judge(*train, 2, JudgeConfig(steps=80, batch_size=8, width=8), test=(test[0][:3], test[1][:3]))
    assert unnamed.test_by_class == {"0": (1.0, 2), "1": (1.0, 1)}  # labels 0, 1, 0
    assert train_judge(*train, 2, JudgeConfig(steps=2, batch_size=8, width=8)).test_by_class == {}


def test_an_ensemble_of_judges_averages_its_members_probabilities_and_round_trips(tmp_path) -> None:
    import torch

    from vidgen_core.eval.judge import predict
    from vidgen_core.models.io import load_model, save_model
    from vidgen_core.models.judge import JudgeEnsemble

    train, test = _clips(16, 0), _clips(8, 1)
    result = train_judge(*train, 2, JudgeConfig(steps=80, batch_size=8, width=8, ensemble=3), test=test)
    ensemble = result.judge
    assert isinstance(ensemble, JudgeEnsemble) and len(ensemble.members) == 3
    assert len(result.member_test_accuracy) == 3 and result.test_accuracy == 1.0
    # Members differ (their own seeds), and the ensemble's probabilities are their mean.
    assert not torch.equal(ensemble.members[0].head.weight, ensemble.members[1].head.weight)
    mean = np.mean([predict(m, test[0]) for m in ensemble.members], axis=0)
    assert np.allclose(predict(ensemble, test[0]), mean, atol=1e-5)
    assert torch.equal(ensemble.features(torch.from_numpy(test[0])), ensemble.members[0].features(torch.from_numpy(test[0])))
    save_model(ensemble, "judge", {"width": 8, "standardise": True, "members": 3}, tmp_path / "j", extra={"num_classes": 2})
    loaded, _ = load_model(tmp_path / "j")
    assert isinstance(loaded, JudgeEnsemble)
    assert np.allclose(predict(loaded, test[0]), predict(ensemble, test[0]), atol=1e-6)
