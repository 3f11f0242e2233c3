"""Views of a finished pipeline run read back from MLflow: `vidgen status` and the HTML report.

A small fake pipeline is written straight into a SQLite store (a parent run
with step tags, step runs with metric histories and PNG artifacts), so these
tests need neither Ray nor training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vidgen_core.config import config_dict, load_config

RECIPE = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "tiny.yaml"


def _png(tmp: Path, name: str, shape: tuple[int, int]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp / name
    plt.imsave(path, np.random.default_rng(0).random((*shape, 3)))
    return path


@pytest.fixture
def finished(tmp_path: Path) -> dict:
    """A workdir whose store holds one finished pipeline run of the tiny recipe (experiment vidgen-tiny)."""
    from mlflow import MlflowClient

    from vidgen_core.tracking.mlflow_setup import open_store
    from workflows import run_store as rs
    from workflows.liveness import KIND_TAG

    workdir = tmp_path / "wd"
    workdir.mkdir()
    cfg = load_config(RECIPE, ["train_vae.steps=7"])
    uri = f"sqlite:///{workdir}/mlflow.db"
    client, exp = open_store(uri, cfg.tracking.experiment, workdir)
    parent = client.create_run(exp, run_name="pipeline-test", tags={KIND_TAG: "pipeline", "vidgen.workdir": str(workdir)})
    pid = parent.info.run_id
    client.log_dict(pid, config_dict(cfg), "config.json")
    runs = {}
    for step in ("synth", "train_vae", "evaluate"):
        run = client.create_run(exp, run_name=step, tags={"mlflow.parentRunId": pid, rs.STEP_TAG: step, KIND_TAG: "step"})
        runs[step] = run.info.run_id
        client.set_tag(pid, rs.pipeline_step_tag(step), f"ran {run.info.run_id}")
    for i in range(5):
        client.log_metric(runs["train_vae"], "loss", 1.0 / (i + 1), step=10 * i)
        client.log_metric(runs["train_vae"], "clips_per_s", 40.0 + i, step=10 * i)
    client.log_metric(runs["evaluate"], "vae_psnr", 23.5)
    client.log_metric(runs["evaluate"], "baseline_ssim", 0.71)
    client.set_tag(runs["evaluate"], "vidgen.judge_warning", "the judge recognises only 63% <of> the real test clips")
    client.log_artifact(runs["evaluate"], str(_png(tmp_path, "recon_strip.png", (32, 128))), "previews")
    client.log_artifact(runs["evaluate"], str(_png(tmp_path, "rd_curve.png", (60, 80))), "plots/codec")
    client.log_artifact(runs["evaluate"], str(_png(tmp_path, "ignored.png", (8, 8))), "elsewhere")
    for run_id in [*runs.values(), pid]:
        client.set_terminated(run_id, "FINISHED")
    return {"workdir": workdir, "uri": uri, "pid": pid, "runs": runs, "client": MlflowClient(uri)}


def test_status_reads_the_config_the_run_logged(finished) -> None:
    """No --config: the run used tiny.yaml (its own experiment, steps=7), and status knows it from the run."""
    from workflows.status import status_table

    lines = status_table(finished["workdir"])
    assert lines[0].startswith(f"pipeline run {finished['pid']}  FINISHED")
    assert "experiment 'vidgen-tiny'" in lines[1]
    assert any(line.startswith("train_vae") and finished["runs"]["train_vae"] in line for line in lines)


def test_status_cli_needs_no_recipe(finished) -> None:
    from workflows.cli import main

    result = CliRunner().invoke(main, ["status", "--workdir", str(finished["workdir"])])
    assert result.exit_code == 0, result.output
    assert finished["pid"] in result.output and "vidgen-tiny" in result.output


def test_the_report_embeds_metrics_curves_and_every_preview_and_plot(finished) -> None:
    from workflows.html_report import build_report

    page = build_report(finished["client"], finished["pid"])
    assert "vae_psnr" in page and "23.5" in page and "baseline_ssim" in page
    assert "previews/recon_strip.png" in page and "plots/codec/rd_curve.png" in page
    assert "elsewhere/ignored.png" not in page
    assert '<p class="warn">warning: the judge recognises only 63% &lt;of&gt; the real test clips</p>' in page
    # Self-contained: images are data URIs (2 artifacts + 1 curve grid), nothing is fetched.
    assert page.count('src="data:image/png;base64,') == 3
    assert "src=\"http" not in page and "<script" not in page
    assert "&quot;steps&quot;: 7" in page  # the logged config (HTML-escaped)


def test_vidgen_report_regenerates_and_logs_it(finished) -> None:
    from workflows.cli import main

    result = CliRunner().invoke(main, ["report", "--workdir", str(finished["workdir"])])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path == finished["workdir"] / "reports" / f"{finished['pid']}.html" and path.stat().st_size > 1000
    assert [a.path for a in finished["client"].list_artifacts(finished["pid"])] == ["config.json", "report.html"]
    step_run = finished["runs"]["evaluate"]
    again = CliRunner().invoke(main, ["report", step_run, "--workdir", str(finished["workdir"])])
    assert again.exit_code == 2 and "is not a pipeline run" in again.output
