"""What a person sees in a browser: the finished tiny run in MLflow's UI, and its HTML report.

A real ``mlflow server`` on 127.0.0.1 serves the run's own SQLite store, and
headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by
Selenium) opens the pipeline run page, the evaluate run's PNG previews and the
report file. Each page is screenshotted into the test's temp dir (the path is
printed) and checked as rendered: the run's name, a metric value, images that
actually loaded (``naturalWidth > 0``). MLflow's UI is a React app: every check
polls the rendered page until it holds or a deadline passes.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import struct
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from procs import MlflowServer, stop_session
from vidgen_core.tracking.mlflow_setup import UI_WORKFLOW_QUERY, run_page_url
from workflows.run_store import pipeline_step_tag

pytestmark = [pytest.mark.ui, pytest.mark.e2e, pytest.mark.timeout(1200)]

# The UI and its API calls are slow on a loaded 2-core machine; a page that renders at all renders within this.
RENDER_S = 180
PREVIEWS = ("previews/vae_recon_val.png", "previews/gan_samples_by_class.png")


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or next((p for p in (f"/usr/lib/chromium/{name}",) if Path(p).is_file()), None)
        if found:
            return found
    return None


CHROMIUM = _which("chromium", "chromium-browser")
CHROMEDRIVER = _which("chromedriver")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ui-screenshots")
    print(f"\nscreenshots: {out}")
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver, both in a session of their own, stopped at teardown."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium chromium-driver; "
                    ".ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with both paths given, Selenium never tries to download a browser or driver
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={profile}", "--no-first-run"):
        options.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(profile / "chromedriver.log"),
                      popen_kw={"start_new_session": True})
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(RENDER_S)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            if service.process is not None:
                stop_session(service.process)


@pytest.fixture(scope="module")
def ui(tiny_run):
    """``mlflow server`` on the finished run's store; ids from its REST API."""
    assert tiny_run["rc"] == 0, "\n".join(line for _, line in tiny_run["lines"][-20:])
    workdir: Path = tiny_run["workdir"]
    pid = next(line for _, line in tiny_run["lines"] if line.startswith("[vidgen] pipeline run ")).split()[3]
    server = MlflowServer(workdir)  # backend: workdir/mlflow.db; runs' artifacts: their own file URIs
    server.start(timeout_s=300)
    try:
        def api(path: str, body: dict | None = None, **query: str) -> dict:
            request = urllib.request.Request(
                f"{server.url}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}",
                data=None if body is None else json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as r:
                return json.load(r)

        pipeline = api("runs/get", run_id=pid)["run"]
        eid = pipeline["info"]["experiment_id"]
        tags = {tag["key"]: tag["value"] for tag in pipeline["data"].get("tags", [])}
        evaluate = api("runs/get", run_id=tags[pipeline_step_tag("evaluate")].split()[1])["run"]  # "ran <id>"
        yield {"url": server.url, "eid": eid, "pipeline": pipeline, "evaluate": evaluate,
               "workdir": workdir, "pid": pid}
    finally:
        server.stop()


def _metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def _as_js(value: float) -> str:
    """How MLflow's UI writes a metric: JavaScript's Number#toString (shortest round trip, integers bare)."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    assert 1e-6 <= abs(value) < 1e21, "pick a metric JS would not write in exponent form"
    return repr(value)


def _open(driver, url: str) -> None:
    """Load ``url`` afresh: the UI reads an artifact path from the URL only when the run page mounts, so a
    hash-only change from one artifact to another would leave the first one on screen."""
    driver.get("about:blank")
    driver.get(url)


def _body(driver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def _await(driver, what: str, check: Callable[[], object], shot: Path) -> object:
    """Poll ``check()`` until it is truthy; on timeout, screenshot to ``shot`` and fail naming ``what``."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, RENDER_S, poll_frequency=0.5).until(lambda _: check())
    except TimeoutException:
        driver.save_screenshot(str(shot))
        pytest.fail(f"{what}: not rendered within {RENDER_S}s (screenshot {shot}); page text: {_body(driver)[:1500]!r}")


def _loaded_images(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.images).map(i => ({alt: i.alt, src: i.src.slice(0, 80), complete: i.complete,"
        " w: i.naturalWidth, h: i.naturalHeight}))")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _model_training_layout(body: str) -> bool:
    """The UI's model-training layout: its side bar has "Model registry"; the GenAI one has "Evaluation runs"."""
    return "Model registry" in body and "Evaluation runs" not in body and "Evaluations" not in body


def test_pipeline_run_page_shows_its_name_and_metric(browser, ui, shots, tiny_run) -> None:
    name = ui["pipeline"]["info"]["run_name"]
    duration = _metrics(ui["pipeline"])["pipeline_duration_s"]
    # The link the closing summary prints (with the UI's port), opened in a browser that never saw MLflow.
    link = run_page_url("http://127.0.0.1:5000", ui["eid"], ui["pid"])
    assert any(link in line for _, line in tiny_run["lines"]), link
    _open(browser, link.replace("http://127.0.0.1:5000", ui["url"]))
    wanted = [name, "pipeline_duration_s", _as_js(duration)]
    _await(browser, f"pipeline run page with {wanted}", lambda: all(w in _body(browser) for w in wanted),
           shots / "mlflow-pipeline-run.timeout.png")
    browser.save_screenshot(str(shots / "mlflow-pipeline-run.png"))
    assert _model_training_layout(_body(browser)), _body(browser)[:400]


@pytest.mark.parametrize("artifact", PREVIEWS)
def test_evaluate_previews_load_in_the_artifact_view(browser, ui, shots, artifact) -> None:
    run_id = ui["evaluate"]["info"]["run_id"]
    with urllib.request.urlopen(f"{ui['url']}/get-artifact?"
                                f"{urllib.parse.urlencode({'path': artifact, 'run_uuid': run_id})}", timeout=60) as r:
        size = _png_size(r.read())
    _open(browser, f"{ui['url']}/#/experiments/{ui['eid']}/runs/{run_id}/artifacts/{artifact}?{UI_WORKFLOW_QUERY}")
    stem = Path(artifact).stem
    # The preview pane shows the PNG itself (inlined as a data: URI): an image of exactly its size, decoded.
    # (Other images on the page, the assistant panel's icon for one, are not it.)
    _await(browser, f"{artifact} ({size[0]}x{size[1]}) in the evaluate run's artifact view",
           lambda: [i for i in _loaded_images(browser) if i["complete"] and (i["w"], i["h"]) == size],
           shots / f"mlflow-evaluate-{stem}.timeout.png")
    browser.save_screenshot(str(shots / f"mlflow-evaluate-{stem}.png"))
    text = _body(browser)
    assert Path(artifact).name in text and "evaluate" in text
    assert _model_training_layout(text), text[:400]


def test_html_report_renders_with_its_images(browser, ui, shots) -> None:
    report = ui["workdir"] / "reports" / f"{ui['pid']}.html"
    assert report.is_file(), list((ui["workdir"] / "reports").glob("*"))
    _open(browser, report.as_uri())
    evaluate = _metrics(ui["evaluate"])
    psnr = f"{evaluate['vae_psnr']:.4g}"  # as the report's metric tables write it
    wanted = [ui["pipeline"]["info"]["run_name"], ui["pid"], "vae_psnr", psnr]
    _await(browser, f"report with {wanted}",
           lambda: browser.execute_script("return document.readyState") == "complete"
           and all(w in _body(browser) for w in wanted), shots / "report.timeout.png")
    images = _await(browser, "report images decoded",
                    lambda: (lambda imgs: imgs if imgs and all(i["complete"] for i in imgs) else None)(
                        _loaded_images(browser)), shots / "report.timeout.png")
    _full_page_screenshot(browser, shots / "report.png")
    assert all(i["w"] > 0 and i["h"] > 0 for i in images), images
    alts = {i["alt"] for i in images}
    assert set(PREVIEWS) <= alts, alts


def _full_page_screenshot(driver, path: Path) -> None:
    """The whole document, not just the window (Chromium's DevTools protocol)."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": math.ceil(size["width"]), "height": min(math.ceil(size["height"]), 16000),
            "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))
