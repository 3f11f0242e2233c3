"""`vidgen` command line.

Every error a user can cause ends in one line on stderr and exit code 2;
configs are validated before anything is written.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from vidgen_core.config import ConfigError, PipelineConfig, load_config
from vidgen_core.errors import UserError

DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "workflows" / "configs" / "default.yaml"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"vidgen: error: {message}", err=True)
    sys.exit(code)


def _config(config: str | None, overrides: tuple[str, ...]) -> PipelineConfig:
    path = config if config is not None else (DEFAULT_RECIPE if DEFAULT_RECIPE.exists() else None)
    return load_config(path, list(overrides))


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user-caused errors into one line + exit 2 (a crash keeps its traceback)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, UserError) as exc:
            _fail(str(exc))

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


config_option = click.option("--config", "-c", type=str, default=None, help="YAML recipe (default: workflows/configs/default.yaml).")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value, e.g. --set train_vae.steps=100 (repeatable).")


@click.group()
def main() -> None:
    """vidgen: train, evaluate and register generative video models on Ray and MLflow."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@main.command()
@config_option
@set_option
@click.option("--workdir", "-w", type=str, default=None, help="Work directory for data, checkpoints and the local MLflow store (default: ./vidgen-work).")
@click.option("--force", multiple=True, metavar="STEP", help="Recompute STEP and everything downstream even if a finished run exists.")
@_guarded
def run(config: str | None, overrides: tuple[str, ...], workdir: str | None, force: tuple[str, ...]) -> None:
    """Run the whole workflow: synth → ingest → train_vae → train_gan → evaluate → register."""
    cfg = _config(config, overrides)
    if cfg.data.source and "://" not in cfg.data.source and not Path(cfg.data.source).exists():
        raise UserError(f"data.source '{cfg.data.source}' does not exist; point it at a folder of videos")
    from workflows.dag import STEP_NAMES
    from workflows.executor import StepFailed, run_pipeline
    from workflows.report import print_summary
    from workflows.runtime import resolve_workdir

    for name in force:
        if name not in STEP_NAMES:
            raise UserError(f"unknown step '{name}' for --force; steps are: {', '.join(STEP_NAMES)}")
    wd = resolve_workdir(workdir)
    try:
        result = run_pipeline(cfg, wd, force=list(force))
    except StepFailed as exc:
        _fail(f"{exc} (see the step's log above and its MLflow run)", code=1)
    print_summary(result, wd)


@main.command()
@click.option("--out", "out", required=True, type=str, help="Folder to write class sub-folders of MP4 files into.")
@config_option
@set_option
@_guarded
def synth(out: str, config: str | None, overrides: tuple[str, ...]) -> None:
    """Generate the labelled moving-shapes videos (real H.264 MP4 files)."""
    cfg = _config(config, overrides)
    from vidgen_core.video.synth import generate_dataset

    videos = generate_dataset(cfg.synth, out)
    click.echo(f"wrote {len(videos)} videos in {len(cfg.synth.classes)} classes under {os.path.abspath(out)}")


@main.command()
@click.argument("src", type=str)
@click.option("--out", "out", required=True, type=str, help="Folder (or s3:// URI) for Parquet clip shards + manifest.json.")
@config_option
@set_option
@_guarded
def ingest(src: str, out: str, config: str | None, overrides: tuple[str, ...]) -> None:
    """Decode the videos under SRC into Parquet clip shards with Ray Data."""
    cfg = _config(config, overrides)
    if "://" not in src and not Path(src).exists():
        raise UserError(f"source '{src}' does not exist; pass a folder of videos")
    from vidgen_core.data.ingest import run_ingest
    from workflows.runtime import init_ray

    init_ray(cfg.ray)
    manifest = run_ingest(src, out, cfg.ingest, cfg.data)
    click.echo(
        f"{manifest['num_clips']} clips from {manifest['num_files_with_clips']}/{manifest['num_inputs']} files "
        f"({manifest['num_files_with_errors']} with errors) → {out}; per split: {manifest['clips_per_split']}"
    )


if __name__ == "__main__":
    main()
