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
    # MLflow draws a tqdm bar on stderr for every artifact download (status, report): not the user's story.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@main.command()
@config_option
@set_option
@click.option("--workdir", "-w", type=str, default=None, help="Work directory for data, checkpoints and the local MLflow store (default: ./vidgen-work).")
@click.option("--force", multiple=True, metavar="STEP", help="Recompute STEP and everything downstream even if a finished run exists.")
@click.option("--from", "from_steps", multiple=True, metavar="STEP", help="Resume at STEP: it and everything downstream run; every other step reuses its latest run even if the code changed since.")
@click.option("--verbose", "-v", is_flag=True, help="Show everything on the console (Ray's and MLflow's output too); WORKDIR/logs/ always has it.")
@_guarded
def run(config: str | None, overrides: tuple[str, ...], workdir: str | None, force: tuple[str, ...], from_steps: tuple[str, ...],
        verbose: bool) -> None:
    """Run the whole workflow: synth → ingest → train_vae → train_gan → evaluate → register."""
    cfg = _config(config, overrides)
    if cfg.data.source and "://" not in cfg.data.source and not Path(cfg.data.source).exists():
        raise UserError(f"data.source '{cfg.data.source}' does not exist; point it at a folder of videos")
    from workflows.dag import STEP_NAMES
    from workflows.executor import StepFailed, run_pipeline
    from workflows.report import print_summary
    from workflows.runtime import resolve_workdir

    for option, names in (("--force", force), ("--from", from_steps)):
        for name in names:
            if name not in STEP_NAMES:
                raise UserError(f"unknown step '{name}' for {option}; steps are: {', '.join(STEP_NAMES)}")
    wd = resolve_workdir(workdir)
    from workflows.console import RunLog, story
    from workflows.monitor import ConsoleMonitor

    run_log = RunLog(wd, verbose)
    monitor = ConsoleMonitor(run_log)
    say = story().info
    try:
        result = run_pipeline(cfg, wd, force=list(force), from_steps=list(from_steps), echo=say, monitor=monitor)
        monitor.close()
        print_summary(result, wd, echo=say)
        report = _report(result.tracking_uri, result.pipeline_run_id, wd)
        say(f"work dir:     {wd} · report: {report} · log file: {run_log.path}")
    except StepFailed as exc:
        monitor.close()
        _crash(_first_line(str(exc)), exc.detail or None, run_log.path)
    except (ConfigError, UserError) as exc:
        story().error("%s", exc, extra={"file_only": True})  # the console gets it once, from _guarded
        raise
    except Exception as exc:  # a bug in vidgen itself: one line here, the traceback in the log file
        monitor.close()
        _crash(_first_line(f"vidgen crashed: {type(exc).__name__}: {exc}"), None, run_log.path, exc_info=True)
    finally:
        if monitor.pipeline_run_id is not None:
            from vidgen_core.tracking.mlflow_setup import resolve_tracking_uri

            run_log.save_to_mlflow(resolve_tracking_uri(cfg.tracking.uri, str(wd)), monitor.pipeline_run_id)
        run_log.close()


def _report(tracking_uri: str, pipeline_run_id: str, workdir: Path) -> str:
    """Write the run's HTML report; a failure here is a warning, the run itself succeeded."""
    from workflows.html_report import write_report

    try:
        return str(write_report(tracking_uri, pipeline_run_id, workdir / "reports"))
    except Exception as exc:  # noqa: BLE001
        import logging

        logging.getLogger("workflows.html_report").warning("no report: %s: %s", type(exc).__name__, exc, exc_info=True)
        return f"not written ({type(exc).__name__}: {exc}; see the log file)"


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), text)


def _crash(line: str, detail: str | None, log_path: Path, exc_info: bool = False) -> None:
    """One line on stderr naming what failed and where the full story is; the story goes to the log file."""
    import logging

    logging.getLogger("vidgen").error("%s%s", line, f"\n{detail}" if detail else "", exc_info=exc_info,
                                      extra={"file_only": True})
    _fail(f"{line} (full traceback in {log_path})", code=1)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--address", type=str, default=None, help="The cluster's job API (dashboard), e.g. http://HEAD:8265 (default: $RAY_ADDRESS, else http://127.0.0.1:8265).")
@click.option("--no-wait", is_flag=True, help="Print the job id and return; do not follow the job.")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED, metavar="-- [VIDGEN RUN ARGS]...")
@_guarded
def submit(address: str | None, no_wait: bool, run_args: tuple[str, ...]) -> None:
    """Run the workflow as a job on a Ray cluster: `vidgen submit --address URL -- --config R --workdir /shared/DIR`.

    Uploads this project as the job's working dir, passes MLFLOW_TRACKING_URI (and
    MLflow/AWS credentials) through, prints the job id, follows its logs and exits
    with its status (0: SUCCEEDED). Token auth: RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN.
    """
    from workflows.submit import follow, resolve_address, submit_job

    params = run.make_context("run", list(run_args)).params  # the same options and checks as `vidgen run`
    cfg = _config(params["config"], params["overrides"])
    workdir = params["workdir"]
    if workdir is None or ("://" not in workdir and not os.path.isabs(workdir)):
        raise UserError("vidgen submit needs an absolute --workdir (the job runs in a temporary copy of the project); "
                        "on a multi-node cluster one every node mounts, with --set storage.shared=true")
    client, job_id = submit_job(address, cfg, list(run_args), params["config"], workdir)
    if no_wait:
        click.echo(job_id)
        return
    url = resolve_address(address)
    click.echo(f"[vidgen] submitted job {job_id} to {url}  (stop it: ray job stop --address {url} {job_id})")
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        _fail(f"stopped following; job {job_id} keeps running (`vidgen jobs` shows it, `ray job stop {job_id}` ends it)", 130)
    click.echo(f"[vidgen] job {job_id} {status}")
    sys.exit(0 if status == "SUCCEEDED" else 1)


@main.command()
@click.option("--address", type=str, default=None, help="The cluster's job API (default: $RAY_ADDRESS, else http://127.0.0.1:8265).")
@_guarded
def jobs(address: str | None) -> None:
    """The cluster's jobs, newest first: id, status, start time, entrypoint."""
    from workflows.submit import job_lines

    for line in job_lines(address):
        click.echo(line)


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
@click.option("--out", "out", required=True, type=str, help="Folder (or s3:// URI) for Parquet clip shards + _manifest.json.")
@config_option
@set_option
@click.option("--retry-failed", is_flag=True, help="Read again only the files in OUT's error list (and any new ones).")
@_guarded
def ingest(src: str, out: str, config: str | None, overrides: tuple[str, ...], retry_failed: bool) -> None:
    """Decode the videos under SRC into Parquet clip shards with Ray Data.

    Re-running on the same OUT reads only files that are new or changed since.
    """
    cfg = _config(config, overrides)
    if "://" not in src and not Path(src).exists():
        raise UserError(f"source '{src}' does not exist; pass a folder of videos")
    from vidgen_core.data.ingest import ingest_videos
    from workflows.runtime import init_ray

    init_ray(cfg.ray)
    result = ingest_videos(src, out, cfg.ingest, cfg.data, retry_failed=retry_failed)
    click.echo(f"{result.summary()} → {out}")


@main.command()
@click.option("--workdir", "-w", type=str, default="vidgen-work", help="Work directory of the pipeline (default: ./vidgen-work).")
@click.option("--tracking-uri", type=str, default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the work dir's store).")
@_guarded
def status(workdir: str, tracking_uri: str | None) -> None:
    """Show the DAG of the latest run: each step's state, run id, duration, whether it was reused.

    Reads the config that run logged, whatever recipe is at hand now.
    """
    from workflows.status import status_table

    for line in status_table(Path(workdir).expanduser().resolve(), tracking_uri):
        click.echo(line)


@main.command()
@click.argument("run_id", required=False, type=str)
@click.option("--workdir", "-w", type=str, default="vidgen-work", help="Work directory of the pipeline (default: ./vidgen-work).")
@click.option("--tracking-uri", type=str, default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the work dir's store).")
@_guarded
def report(run_id: str | None, workdir: str, tracking_uri: str | None) -> None:
    """Write the HTML report of pipeline run RUN_ID (default: the latest in the work dir) and log it to that run."""
    from workflows.html_report import write_report
    from workflows.status import find_pipeline_run

    wd = Path(workdir).expanduser().resolve()
    uri, pipeline_run_id = find_pipeline_run(wd, tracking_uri, run_id)
    click.echo(str(write_report(uri, pipeline_run_id, wd / "reports")))


@main.group()
def models() -> None:
    """The model registry: list versions, show one version's lineage, move an alias."""


_registry_options = [
    click.option("--workdir", "-w", type=str, default="vidgen-work", help="Work directory whose SQLite store to read (default: ./vidgen-work)."),
    click.option("--tracking-uri", type=str, default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the work dir's store)."),
]


def _registry(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_registry_options):
        fn = option(fn)
    return fn


def _client(workdir: str, tracking_uri: str | None) -> Any:
    from vidgen_core.tracking.mlflow_setup import resolve_tracking_uri
    from vidgen_core.tracking.models_cli import open_registry

    return open_registry(resolve_tracking_uri(tracking_uri, str(Path(workdir).expanduser().resolve())))


@models.command("list")
@_registry
@click.option("--prefix", type=str, default=None, help="Only models whose name starts with this, e.g. vidgen-.")
@_guarded
def models_list(workdir: str, tracking_uri: str | None, prefix: str | None) -> None:
    """Registered models, their versions, aliases and headline metrics."""
    from vidgen_core.tracking.models_cli import list_models

    click.echo("\n".join(list_models(_client(workdir, tracking_uri), prefix)))


@models.command("show")
@click.argument("uri", type=str)
@_registry
@_guarded
def models_show(uri: str, workdir: str, tracking_uri: str | None) -> None:
    """One version (models:/NAME/VERSION or models:/NAME@ALIAS): aliases, lineage, metrics, decision."""
    from vidgen_core.tracking.models_cli import show_model

    click.echo("\n".join(show_model(_client(workdir, tracking_uri), uri)))


@models.command("promote")
@click.argument("name", type=str)
@click.argument("version", type=str)
@click.option("--alias", type=str, default="champion", show_default=True, help="Alias to point at VERSION.")
@_registry
@_guarded
def models_promote(name: str, version: str, alias: str, workdir: str, tracking_uri: str | None) -> None:
    """Point an alias (default: champion) of model NAME at VERSION by hand."""
    from vidgen_core.tracking.models_cli import promote

    click.echo("\n".join(promote(_client(workdir, tracking_uri), name, version, alias)))


@main.command("plan-memory")
@config_option
@set_option
@click.option("--gpu-memory-gb", type=float, default=80.0, show_default=True, help="Memory of one GPU (decimal GB, as sold).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per training job instead of text.")
@_guarded
def plan_memory_cmd(config: str | None, overrides: tuple[str, ...], gpu_memory_gb: float, as_json: bool) -> None:
    """Estimate peak GPU memory of train_vae and train_gan for a config, and the largest batch that fits."""
    cfg = _config(config, overrides)
    if gpu_memory_gb <= 0:
        raise UserError(f"--gpu-memory-gb must be > 0, got {gpu_memory_gb}")
    import json

    from vidgen_core.train.memory_plan import plan_memory

    try:
        estimates = plan_memory(cfg, gpu_memory_gb=gpu_memory_gb)
    except ValueError as exc:  # e.g. a clip shape the VAE's downsampling does not divide
        raise UserError(str(exc)) from None
    for est in estimates:
        click.echo(json.dumps(est.as_dict()) if as_json else est.line())


_tracking_option = click.option("--tracking-uri", type=str, default=None,
                                help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./vidgen-work's store).")


@main.command()
@click.argument("src", type=str)
@click.option("--model", "-m", "model_uri", required=True, metavar="URI", help="models:/NAME@ALIAS or models:/NAME/VERSION of a VAE.")
@click.option("--out", "-o", "out", required=True, type=str, help="The .vgc file to write.")
@click.option("--quality", "-q", type=int, default=None, help="Rate setting: 0 = smallest file; default: the model's.")
@_tracking_option
@_guarded
def compress(src: str, model_uri: str, out: str, quality: int | None, tracking_uri: str | None) -> None:
    """Compress the video SRC (any size) into a .vgc file with a registered VAE."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from vidgen_core.codec.files import _check_input, _check_output, compress_file
    from vidgen_core.codec.model import load_registered

    _check_input(src)  # both before the (slow) model load
    _check_output(out, ".vgc", src)
    model = load_registered(model_uri, "compress", tracking_uri)
    r = compress_file(src, out, model, quality, progress=True)
    h = r.header
    click.echo(f"wrote {r.out}: {h.frames} frames {h.width}x{h.height}, quality {h.quality}, "
               f"{r.num_bytes} bytes = {r.bpp:.4f} bpp, {r.frames_per_s:.1f} frames/s, model {h.model_uri}")


@main.command()
@click.argument("src", type=str)
@click.option("--out", "-o", "out", required=True, type=str, help="The MP4 to write.")
@click.option("--model", "-m", "model_uri", default=None, metavar="URI", help="Model to decode with (default: the one named in the file; another model is refused).")
@click.option("--crf", type=int, default=12, show_default=True, help="H.264 quality of the MP4 (0 = best).")
@click.option("--frames-dir", type=str, default=None, help="Also write the decoded frames as lossless PNGs here.")
@_tracking_option
@_guarded
def decompress(src: str, out: str, model_uri: str | None, crf: int, frames_dir: str | None, tracking_uri: str | None) -> None:
    """Decode a .vgc file into an MP4 with the model that made it."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from vidgen_core.codec.files import _check_output, decompress_file
    from vidgen_core.codec.model import load_registered
    from vidgen_core.codec.stream import check_model

    _check_output(out, ".mp4", src)

    def resolve(header):  # the model the file names, or the one given (checked against the file)
        if model_uri is None and header.model_version == 0:
            raise UserError(f"'{src}' was made by an unregistered model ({header.model_name}); pass it with -m")
        model = load_registered(model_uri or header.model_uri, "decompress", tracking_uri)
        check_model(model, header)
        return model

    r = decompress_file(src, out, resolve, crf=crf, frames_dir=frames_dir, progress=True)
    extra = f" + PNG frames in {frames_dir}" if frames_dir else ""
    click.echo(f"wrote {r.out}: {r.header.frames} frames {r.header.width}x{r.header.height} at {float(r.header.fps):g} fps "
               f"from {r.num_bytes} bytes ({r.bpp:.4f} bpp), {r.frames_per_s:.1f} frames/s{extra}")


from vidgen_core.uses.commands import USE_COMMANDS  # noqa: E402  (generate, embed, classify, similar, compare)

for _command in USE_COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
