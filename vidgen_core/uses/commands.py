"""Click commands of the uses: generate, embed, classify, similar, compare.

Registered on the `vidgen` group by :mod:`workflows.cli`. Every user-caused
error (bad path, corrupt video, unknown or wrong kind of model, unknown label,
embeddings from another model) is one line on stderr and exit code 2; outputs
are written to a temporary name and renamed, so a failure leaves nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import click

from vidgen_core.errors import UserError

_model_option = click.option("--model", "-m", "model_uri", required=True, metavar="URI",
                             help="models:/NAME@ALIAS or models:/NAME/VERSION.")
_tracking_option = click.option("--tracking-uri", type=str, default=None,
                                help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./vidgen-work's store).")


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User-caused errors -> one line + exit 2 (a crash keeps its traceback)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # MLflow's download bar would bury the one line a user needs (and our own bar) on stderr.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo(f"vidgen: error: {exc}", err=True)
            sys.exit(2)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@click.command()
@_model_option
@click.option("-n", "num", type=int, default=16, show_default=True, help="Videos to sample (tiled into one grid).")
@click.option("--label", type=str, default=None, help="Class name or index (conditional models only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed: same seed, same videos.")
@click.option("--fps", type=float, default=8.0, show_default=True)
@click.option("--out", "-o", "out", required=True, type=str, help="Grid video to write (.mp4).")
@click.option("--frames-dir", type=str, default=None, help="Also write the grid's frames as lossless PNGs here.")
@_tracking_option
@_guarded
def generate(model_uri: str, num: int, label: str | None, seed: int, fps: float, out: str,
             frames_dir: str | None, tracking_uri: str | None) -> None:
    """Sample a registered GAN into a grid video."""
    from vidgen_core.uses.generate import generate as run

    g = run(model_uri, num, out, label=label, seed=seed, fps=fps, frames_dir=frames_dir, tracking_uri=tracking_uri)
    extra = f" + PNG frames in {g.frames_dir}" if g.frames_dir else ""
    click.echo(f"wrote {g.num_samples} samples (labels {sorted(set(g.labels))}) → {g.out}{extra}")


@click.command()
@click.argument("src", type=str)
@_model_option
@click.option("--out", "-o", "out", required=True, type=str, help="Parquet file to write.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Clips per VAE forward pass.")
@click.option("--ray/--local", "use_ray", default=None, help="Force Ray Data or the local loop (default: Ray for shard sets and 16+ videos).")
@_tracking_option
@_guarded
def embed(src: str, model_uri: str, out: str, batch_size: int, use_ray: bool | None, tracking_uri: str | None) -> None:
    """Embed the clips of SRC (video file, folder of videos, or shard set) with a registered VAE."""
    from vidgen_core.uses.embed import embed as run

    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    click.echo(run(src, model_uri, out, tracking_uri=tracking_uri, batch_size=batch_size, use_ray=use_ray).line())


@click.command()
@click.argument("videos", nargs=-1, required=True, type=str)
@_model_option
@click.option("--top", type=int, default=3, show_default=True, help="Classes to print per video.")
@_tracking_option
@_guarded
def classify(videos: tuple[str, ...], model_uri: str, top: int, tracking_uri: str | None) -> None:
    """Print the top classes of each video (files or folders) with a registered probe."""
    from vidgen_core.uses.classify import classify as run

    for source, classes in run(list(videos), model_uri, top=max(1, top), tracking_uri=tracking_uri):
        click.echo(f"{source}: " + ", ".join(f"{name} {p:.3f}" for name, p in classes))


@click.command()
@click.argument("query", type=str)
@click.option("--index", "-i", "index", required=True, type=str, help="Embeddings file from `vidgen embed`.")
@click.option("-k", "k", type=int, default=5, show_default=True)
@click.option("--model", "-m", "model_uri", default=None, metavar="URI", help="Model to embed QUERY with (default: the one that made the file).")
@_tracking_option
@_guarded
def similar(query: str, index: str, k: int, model_uri: str | None, tracking_uri: str | None) -> None:
    """The K videos of an embeddings file nearest to QUERY (cosine of pooled latents)."""
    from vidgen_core.uses.similar import similar as run

    for rank, (score, source, label) in enumerate(run(query, index, k, model_uri=model_uri, tracking_uri=tracking_uri), 1):
        click.echo(f"{rank:>3}  {score:+.4f}  {source}" + (f"  [{label}]" if label else ""))


@click.command()
@click.argument("a", type=str)
@click.argument("b", type=str)
@_model_option
@click.option("--per-clip", is_flag=True, help="Also print a timeline: each clip of A against B.")
@_tracking_option
@_guarded
def compare(a: str, b: str, model_uri: str, per_clip: bool, tracking_uri: str | None) -> None:
    """One similarity score of two videos (cosine of pooled VAE latents, in [-1, 1])."""
    from vidgen_core.uses.similar import compare as run

    result = run(a, b, model_uri, tracking_uri=tracking_uri)
    click.echo(f"{result.score:.4f}")
    if per_clip:
        click.echo("t_a(s)  t_b(s)  aligned  best_t_b(s)  best")
        for t_a, t_b, aligned, best_t, best in result.timeline:
            click.echo(f"{t_a:6.2f}  {t_b:6.2f}  {aligned:+.4f}  {best_t:11.2f}  {best:+.4f}")


USE_COMMANDS = (generate, embed, classify, similar, compare)
