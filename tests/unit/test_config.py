"""Config validation: unknown keys and bad values fail early with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidgen_core.config import ConfigError, PipelineConfig, fingerprint, load_config

RECIPES = Path(__file__).resolve().parents[2] / "workflows" / "configs"


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_shipped_recipes_validate(recipe: str) -> None:
    assert isinstance(load_config(RECIPES / recipe), PipelineConfig)


def test_overrides_are_typed() -> None:
    cfg = load_config(None, ["train_vae.steps=7", "train_vae.lr=1e-3", "train_vae.use_gpu=true", "vae.channel_mult=[1,2,4]"])
    assert cfg.train_vae.steps == 7
    assert cfg.train_vae.lr == pytest.approx(1e-3)
    assert cfg.train_vae.use_gpu is True
    assert cfg.vae.channel_mult == [1, 2, 4]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train_vae.stepz=3", "unknown config key 'train_vae.stepz'"),
        ("nosuch.x=1", "unknown config key 'nosuch'"),
        ("train_vae.steps=-1", "bad config value for 'train_vae.steps'"),
        ("train_vae.steps=abc", "bad config value for 'train_vae.steps'"),
        ("vae.spatial_downsample=3", "power of 2"),
        ("ingest.test_fraction=0.9", "val_fraction + test_fraction"),
        ("train_vae.steps", "expected KEY=VALUE"),
        # A VAE-only setting under the GAN's trainer does nothing there: it is refused like a typo.
        ("train_gan.kl_weight=1", "unknown config key 'train_gan.kl_weight'"),
        ("train_gan.augment=[hflip]", "unknown config key 'train_gan.augment'"),
        ("gan.pixel_d_decode=slices", "bad config value for 'gan.pixel_d_decode': Input should be 'clip' or 'slice'"),
        ("gan.pixel_d_grid=1", "bad config value for 'gan.pixel_d_grid': Input should be greater than or equal to 2"),
        ("gan.generator_channels=0", "bad config value for 'gan.generator_channels': Input should be greater than or equal to 1"),
    ],
)
def test_bad_overrides_fail_with_one_line(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_vae: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(scalar)


def test_fingerprint_is_stable_and_sensitive() -> None:
    a, b = load_config(None, []), load_config(None, [])
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(load_config(None, ["train_gan.steps=5"]))


def test_a_recipe_section_overrides_only_the_keys_it_names(tmp_path):
    """`train_vae: {steps: 7}` keeps the pipeline's VAE schedule and augmentation (tiny.yaml once lost them)."""
    from vidgen_core.config import PipelineConfig, load_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("train_vae:\n  steps: 7\n")
    cfg = load_config(recipe)
    default = PipelineConfig().train_vae
    assert cfg.train_vae.steps == 7
    assert cfg.train_vae.augment == default.augment and cfg.train_vae.augment  # not TrainConfig()'s []
    assert (cfg.train_vae.lr, cfg.train_vae.lr_schedule) == (default.lr, default.lr_schedule)
