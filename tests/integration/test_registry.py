"""Register real (tiny) vidgen models in a real SQLite-backed MLflow and load them back.

The load happens in a fresh Python process that imports only MLflow and numpy
(pandas for the GAN input), with pickle disabled: a registered model must be
rebuilt from code + safetensors, never unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import numpy as np
import pytest
import torch

from vidgen_core.config import GANConfig, TrackingConfig, VAEConfig
from vidgen_core.errors import UserError

pytestmark = pytest.mark.integration

T, SIZE, NUM_CLASSES = 4, 16, 3


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    from mlflow import MlflowClient

    from vidgen_core.tracking.mlflow_setup import init_tracking

    workdir = tmp_path_factory.mktemp("ws")
    uri, experiment_id = init_tracking(TrackingConfig(experiment="vidgen-test"), workdir)
    return SimpleNamespace(workdir=workdir, uri=uri, experiment_id=experiment_id, client=MlflowClient(uri))


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """A tiny VideoVAE and LatentGenerator saved with vidgen_core.models.io."""
    from vidgen_core.models.gan import LatentGenerator
    from vidgen_core.models.io import save_model
    from vidgen_core.models.vae import VideoVAE

    root = tmp_path_factory.mktemp("models")
    # Both folders are called "model", as training writes them: the GAN's two
    # directory artifacts must not collide inside the logged model.
    vae_dir, gan_dir = root / "train_vae" / "model", root / "train_gan" / "model"
    torch.manual_seed(0)
    vae_cfg = VAEConfig(base_channels=4, channel_mult=[1], latent_channels=2)
    vae = VideoVAE(vae_cfg)
    save_model(vae, "vae", vae_cfg.model_dump(), vae_dir, extra={"clip_len": T, "size": SIZE})
    latent_shape = vae.latent_shape(T, SIZE)
    gan_cfg = GANConfig(noise_dim=8, base_channels=4)
    gen = LatentGenerator(gan_cfg, latent_shape, NUM_CLASSES)
    gen.latent_scale.fill_(2.0)
    extra = {"clip_len": T, "size": SIZE, "latent_shape": list(latent_shape), "num_classes": NUM_CLASSES,
             "noise_dim": gan_cfg.noise_dim, "latent_scale": 2.0, "vae_dir": str(vae_dir)}
    save_model(gen, "gan", gan_cfg.model_dump(), gan_dir, extra=extra)
    return SimpleNamespace(vae=str(vae_dir), gan=str(gan_dir))


@pytest.fixture(scope="module")
def registered(tracking, model_dirs):
    """Both models registered from one (still running) register-step run."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from vidgen_core.tracking.registry import register_model

    global_uri_before = tracking_utils._tracking_uri
    run = tracking.client.create_run(tracking.experiment_id, run_name="register")
    tags = {"data_manifest_fingerprint": "abc123", "git_commit": "deadbeef", "vae_psnr": "31.5"}
    vae = register_model("vae", model_dirs.vae, "vidgen-vae", tags, run_id=run.info.run_id,
                         tracking_uri=tracking.uri)
    gan = register_model("gan", model_dirs.gan, "vidgen-gan", {**tags, "vae_model_version": vae["version"]},
                         run_id=run.info.run_id, vae_dir=model_dirs.vae, tracking_uri=tracking.uri)
    assert tracking_utils._tracking_uri == global_uri_before  # no global state left behind
    return SimpleNamespace(run_id=run.info.run_id, vae=vae, gan=gan, tags=tags)


def test_versions_aliases_tags_and_run_link(tracking, registered):
    client = tracking.client
    assert registered.vae == {"name": "vidgen-vae", "version": "1", "model_uri": "models:/vidgen-vae/1",
                              "alias_uri": "models:/vidgen-vae@candidate", "reused": False}
    for name, result in (("vidgen-vae", registered.vae), ("vidgen-gan", registered.gan)):
        mv = client.get_model_version_by_alias(name, "candidate")
        assert str(mv.version) == result["version"]  # the SQLite store returns an int
        assert mv.run_id == registered.run_id
        for key, value in registered.tags.items():
            assert mv.tags[key] == value
        assert mv.tags["vidgen.kind"] == name.split("-")[1]
    assert client.get_model_version("vidgen-gan", "1").tags["vae_model_version"] == "1"
    run = client.get_run(registered.run_id)
    assert run.info.status == "RUNNING"  # registering must not end the caller's run
    assert run.info.experiment_id == tracking.experiment_id


def _logged_model_files(client, name: str, version: str) -> list[Path]:
    source = client.get_model_version(name, version).source  # "models:/<logged model id>"
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    root = Path(urlparse(location).path)
    return [p for p in root.rglob("*") if p.is_file()]


def test_artifacts_are_code_json_and_safetensors_under_the_workdir(tracking, registered):
    for name, script in (("vidgen-vae", "pyfunc_vae.py"), ("vidgen-gan", "pyfunc_gan.py")):
        files = _logged_model_files(tracking.client, name, "1")
        names = {p.name for p in files}
        assert {"MLmodel", script, "config.json", "weights.safetensors"} <= names
        assert not [p for p in files if p.suffix in (".pkl", ".pickle")]
        assert all(str(p).startswith(str(tracking.workdir / "mlartifacts")) for p in files)
    gan_files = _logged_model_files(tracking.client, "vidgen-gan", "1")
    assert sum(p.name == "weights.safetensors" for p in gan_files) == 2  # generator + frozen VAE


_LOADER = textwrap.dedent(
    """
    import json, pickle, sys

    def _no_pickle(*args, **kwargs):
        raise RuntimeError("a registered vidgen model must not be unpickled")

    # Disable unpickling before MLflow (and cloudpickle, which copies these) is imported.
    pickle.load = pickle.loads = _no_pickle
    pickle.Unpickler = _no_pickle

    import mlflow
    import numpy as np
    import pandas as pd

    uri, out = sys.argv[1], sys.argv[2]
    mlflow.set_tracking_uri(uri)
    vae = mlflow.pyfunc.load_model("models:/vidgen-vae@candidate")
    clips = np.random.default_rng(0).integers(0, 256, (3, 4, 16, 16, 3), dtype=np.uint8)
    recon = vae.predict(clips, params={"batch_size": 2})
    gan = mlflow.pyfunc.load_model("models:/vidgen-gan@candidate")
    videos = gan.predict(pd.DataFrame({"label": [0, 2, 1, 0]}), params={"seed": 3})
    again = gan.predict({"label": [0, 2, 1, 0]}, params={"seed": 3})
    np.savez(out, clips=clips, recon=recon, videos=videos, again=again)
    print(json.dumps({"vidgen_modules": sorted(m for m in sys.modules if m.startswith("vidgen_core"))[:3]}))
    """
)


def test_fresh_process_loads_and_runs_both_models(tracking, registered, model_dirs, tmp_path):
    from vidgen_core.eval.inference import generate, reconstruct
    from vidgen_core.models.io import load_model

    script = tmp_path / "load.py"
    script.write_text(_LOADER)
    out = tmp_path / "out.npz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, str(script), tracking.uri, str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["vidgen_modules"]  # rebuilt by vidgen code
    got = np.load(out)
    assert got["recon"].shape == (3, T, SIZE, SIZE, 3) and got["recon"].dtype == np.uint8
    assert got["videos"].shape == (4, T, SIZE, SIZE, 3) and got["videos"].dtype == np.uint8
    np.testing.assert_array_equal(got["videos"], got["again"])  # same seed, same videos

    # The registered models are the saved weights: same outputs as in this process.
    vae, _ = load_model(model_dirs.vae)
    gen, _ = load_model(model_dirs.gan)
    expected = reconstruct(vae, got["clips"], batch_size=3)
    assert np.abs(expected.astype(int) - got["recon"].astype(int)).max() <= 1
    samples = generate(gen, vae, np.array([0, 2, 1, 0]), num_samples=4, batch_size=4, seed=3)
    assert np.abs(samples.astype(int) - got["videos"].astype(int)).max() <= 1
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_signature_rejects_wrong_dtype(tracking, registered):
    from mlflow.exceptions import MlflowException

    from vidgen_core.tracking.registry import load_pyfunc

    model = load_pyfunc("models:/vidgen-vae@candidate", tracking_uri=tracking.uri)
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, T, SIZE, SIZE, 3)
    with pytest.raises(MlflowException):
        model.predict(np.zeros((1, T, SIZE, SIZE, 3), dtype=np.float32))


def test_set_candidate_false_leaves_the_alias(tracking, registered, model_dirs):
    from vidgen_core.tracking.registry import register_model

    run = tracking.client.create_run(tracking.experiment_id)
    again = register_model("vae", model_dirs.vae, "vidgen-vae", {"gate_passed": "false"},
                           run_id=run.info.run_id, set_candidate=False, tracking_uri=tracking.uri)
    assert again["version"] == "2" and "alias_uri" not in again
    assert str(tracking.client.get_model_version_by_alias("vidgen-vae", "candidate").version) == "1"
    assert tracking.client.get_model_version("vidgen-vae", "2").tags["gate_passed"] == "false"
    # No vae_dir: the GAN's config.json names the VAE it was trained on.
    gan = register_model("gan", model_dirs.gan, "vidgen-gan", {}, run_id=run.info.run_id,
                         set_candidate=False, tracking_uri=tracking.uri)
    assert gan["version"] == "2"
    assert sum(p.name == "weights.safetensors" for p in _logged_model_files(tracking.client, "vidgen-gan", "2")) == 2


@pytest.mark.parametrize("uri", ["models:/vidgen-vae@nope", "models:/no-such-model@candidate",
                                 "models:/vidgen-vae/99"])
def test_unknown_model_uri_is_a_one_line_user_error(tracking, registered, uri):
    from vidgen_core.tracking.registry import load_pyfunc

    with pytest.raises(UserError) as err:
        load_pyfunc(uri, tracking_uri=tracking.uri)
    assert str(err.value) == (
        f"unknown model URI '{uri}': no such registered model/alias; list them with `vidgen models list`"
    )


def test_bad_register_calls_are_user_errors(tracking, model_dirs, tmp_path):
    from vidgen_core.tracking.registry import register_model

    with pytest.raises(UserError, match="has no config.json"):
        register_model("gan", model_dirs.gan, "x-gan", {}, vae_dir=str(tmp_path), tracking_uri=tracking.uri)
    orphan = tmp_path / "orphan-gan"
    shutil.copytree(model_dirs.gan, orphan)
    doc = json.loads((orphan / "config.json").read_text())
    del doc["extra"]["vae_dir"]
    (orphan / "config.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="needs vae_dir"):
        register_model("gan", str(orphan), "x-gan", {}, tracking_uri=tracking.uri)
    with pytest.raises(UserError, match="holds a 'vae' model"):
        register_model("gan", model_dirs.vae, "x-gan", {}, vae_dir=model_dirs.vae, tracking_uri=tracking.uri)
    with pytest.raises(UserError, match="has no config.json"):
        register_model("vae", str(tmp_path), "x-vae", {}, tracking_uri=tracking.uri)
    with pytest.raises(UserError, match="unknown model kind"):
        register_model("diffusion", model_dirs.vae, "x", {}, tracking_uri=tracking.uri)  # type: ignore[arg-type]


def test_experiment_helpers_and_artifact_logging(tracking, tmp_path):
    from vidgen_core.tracking.artifacts import log_json, log_metrics
    from vidgen_core.tracking.mlflow_setup import get_or_create_experiment

    client = tracking.client
    assert get_or_create_experiment(client, "vidgen-test") == tracking.experiment_id
    exp = client.get_experiment(tracking.experiment_id)
    assert exp.artifact_location == (tracking.workdir / "mlartifacts").as_uri()
    new_id = get_or_create_experiment(client, "vidgen-other", (tmp_path / "arts").as_uri())
    assert get_or_create_experiment(client, "vidgen-other") == new_id
    client.delete_experiment(new_id)
    with pytest.raises(UserError, match="is deleted"):
        get_or_create_experiment(client, "vidgen-other")

    run = client.create_run(tracking.experiment_id)
    report = {"vae_psnr": 30.5, "num_test_clips": 4}
    log_json(client, run.info.run_id, report, "reports/eval.json")
    local = client.download_artifacts(run.info.run_id, "reports/eval.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == report
    log_metrics(client, run.info.run_id, {**report, "passed": True, "note": "x", "ssim": np.float32(0.5)})
    assert client.get_run(run.info.run_id).data.metrics == {"vae_psnr": 30.5, "num_test_clips": 4.0, "ssim": 0.5}


def test_the_same_dedupe_key_registers_one_version(tracking, model_dirs):
    from vidgen_core.tracking.registry import register_model

    run = tracking.client.create_run(tracking.experiment_id)
    kw = {"run_id": run.info.run_id, "tracking_uri": tracking.uri, "set_candidate": False}
    a = register_model("vae", model_dirs.vae, "dedupe-vae", {"round": "1"}, dedupe_key="pair-1", **kw)
    b = register_model("vae", model_dirs.vae, "dedupe-vae", {"round": "2"}, dedupe_key="pair-1", **kw)
    assert (a["version"], a["reused"], b["version"], b["reused"]) == ("1", False, "1", True)
    assert tracking.client.get_model_version("dedupe-vae", "1").tags["round"] == "2"  # lineage refreshed
    c = register_model("vae", model_dirs.vae, "dedupe-vae", {}, dedupe_key="pair-2", **kw)
    assert c["version"] == "2"
    assert len(tracking.client.search_model_versions("name = 'dedupe-vae'")) == 2


class _Payload:
    """Unpickling this creates a marker file: proof that a loader unpickled it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _logged_root(client, name: str, version: str) -> Path:
    source = client.get_model_version(name, version).source
    return Path(urlparse(client.get_logged_model(source.removeprefix("models:/")).artifact_location).path)


@pytest.fixture()
def tampered(tracking, model_dirs, tmp_path):
    """A freshly registered VAE whose artifact folder the test then tampers with."""
    from vidgen_core.tracking.registry import register_model

    run = tracking.client.create_run(tracking.experiment_id)
    name = f"tamper-{tmp_path.name[-12:].strip('_-')}".lower()
    v = register_model("vae", model_dirs.vae, name, {}, run_id=run.info.run_id, tracking_uri=tracking.uri)
    return SimpleNamespace(name=name, uri=f"models:/{name}/{v['version']}",
                           root=_logged_root(tracking.client, name, v["version"]), marker=tmp_path / "PWNED")


def test_pickle_in_place_of_the_weights_is_refused_everywhere(tracking, tampered, tmp_path):
    import pickle

    from vidgen_core.tracking.registry import load_pyfunc

    weights = tampered.root / "artifacts" / "model" / "weights.safetensors"
    weights.write_bytes(pickle.dumps(_Payload(str(tampered.marker)), protocol=4))
    with pytest.raises(UserError, match="weights file is a pickle, not safetensors") as err:
        load_pyfunc(tampered.uri, tracking_uri=tracking.uri)
    assert "\n" not in str(err.value)
    # A user calling MLflow directly hits the same check in the pyfunc's load_context.
    code = f"import mlflow; mlflow.set_tracking_uri({tracking.uri!r}); mlflow.pyfunc.load_model({tampered.uri!r})"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "refusing to load model artifact" in proc.stderr and "is a pickle, not safetensors" in proc.stderr
    assert not tampered.marker.exists()


def test_a_cloudpickled_python_model_is_refused_before_mlflow_reads_it(tracking, tampered):
    import pickle

    import yaml

    from vidgen_core.tracking.registry import load_pyfunc

    (tampered.root / "python_model.pkl").write_bytes(pickle.dumps(_Payload(str(tampered.marker))))
    mlmodel = yaml.safe_load((tampered.root / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    pyfunc.pop("model_code_path")
    pyfunc.update(loader_module="mlflow.pyfunc.model", python_model="python_model.pkl")
    (tampered.root / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(UserError, match="refusing to load model artifact .*its python_model is cloudpickled"):
        load_pyfunc(tampered.uri, tracking_uri=tracking.uri)
    assert not tampered.marker.exists()


def test_models_list_show_promote(tracking, registered):
    from vidgen_core.tracking.models_cli import list_models, promote, show_model

    listing = "\n".join(list_models(tracking.client, "vidgen-"))
    assert "vidgen-vae" in listing and "vidgen-gan" in listing and "@candidate" in listing
    assert promote(tracking.client, "vidgen-vae", "1")[0] == "vidgen-vae @champion -> version 1"
    shown = "\n".join(show_model(tracking.client, "models:/vidgen-vae@champion"))
    assert shown.startswith("vidgen-vae version 1 @candidate @champion")
    assert "data_manifest_fingerprint" in shown and "abc123" in shown
    assert "manual: @champion set by `vidgen models promote`" in shown
    with pytest.raises(UserError, match="unknown model URI 'models:/vidgen-vae/77'"):
        show_model(tracking.client, "models:/vidgen-vae/77")
    with pytest.raises(UserError, match="bad model URI"):
        show_model(tracking.client, "vidgen-vae")
    with pytest.raises(UserError, match="unknown model URI"):
        promote(tracking.client, "vidgen-vae", "99")
