"""Fingerprints decide reuse: a change invalidates exactly the steps downstream of it."""

from __future__ import annotations

import pytest

from vidgen_core.config import load_config
from workflows.dag import PIPELINE, Step, check_pipeline, downstream_of, step_fingerprints, upstream_of


def _changed(*overrides: str, base_overrides: tuple[str, ...] = ()) -> set[str]:
    base = step_fingerprints(load_config(None, list(base_overrides)), "code")
    new = step_fingerprints(load_config(None, [*base_overrides, *overrides]), "code")
    return {name for name in base if base[name] != new[name]}


def test_a_train_gan_change_invalidates_train_gan_evaluate_register_only() -> None:
    assert _changed("train_gan.steps=7") == {"train_gan", "evaluate", "register"}
    assert _changed("gan.noise_dim=16") == {"train_gan", "evaluate", "register"}


def test_synth_settings_do_not_touch_user_data() -> None:
    everything = {"synth", "ingest", "train_vae", "train_gan", "train_judge", "train_probe", "codec_eval", "evaluate", "register"}
    assert _changed("synth.seed=5") == everything  # generated videos: new videos, new everything
    user = ("data.source=/data/videos",)
    assert _changed("synth.seed=5", base_overrides=user) == set()
    assert _changed("synth.videos_per_class=2", base_overrides=user) == set()
    assert _changed("data.source=/data/other", base_overrides=user) == everything


def test_upstream_changes_cascade_and_code_changes_invalidate_everything() -> None:
    assert _changed("ingest.size=16") == {
        "ingest", "train_vae", "train_gan", "train_judge", "train_probe", "codec_eval", "evaluate", "register",
    }
    assert _changed("vae.latent_channels=8") == {"train_vae", "train_gan", "train_probe", "codec_eval", "evaluate", "register"}
    assert _changed("codec.max_test_videos=3") == {"codec_eval", "register"}
    assert _changed("judge.steps=9") == {"train_judge", "evaluate", "register"}
    assert _changed("probe.steps=7") == {"train_probe", "register"}
    assert _changed("registry.min_improvement=1") == {"register"}
    cfg = load_config(None)
    a, b = step_fingerprints(cfg, "code-a"), step_fingerprints(cfg, "code-b")
    assert all(a[n] != b[n] for n in a)


def test_graph_helpers() -> None:
    assert downstream_of(["train_gan"]) == {"train_gan", "evaluate", "register"}
    assert upstream_of(["train_gan"]) == {"synth", "ingest", "train_vae"}
    assert upstream_of(["synth"]) == set()
    assert downstream_of(["train_probe"]) == {"train_probe", "register"}
    assert downstream_of(["codec_eval"]) == {"codec_eval", "register"}
    assert upstream_of(["codec_eval"]) == {"synth", "ingest", "train_vae"}
    check_pipeline(PIPELINE)
    with pytest.raises(ValueError, match="not listed before it"):
        check_pipeline((Step("b", dict, ("a",), (), 0), Step("a", dict, (), (), 0)))
