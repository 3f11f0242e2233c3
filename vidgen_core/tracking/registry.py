"""Register saved models in the MLflow Model Registry and load them back.

Models are logged as pyfunc "models from code": the script
(``pyfunc_vae.py`` / ``pyfunc_gan.py``) plus the saved model directory
(``config.json`` + ``weights.safetensors``) as an artifact. Loading rebuilds
the network with vidgen code; nothing is pickled.

Global MLflow state is kept out of the way: the model is logged against an
explicit run id and experiment (never the fluent "active run"), and the
tracking URI, when given, is set only for the duration of the call.
"""

from __future__ import annotations

import json
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vidgen_core import storage
from vidgen_core.errors import UserError
from vidgen_core.tracking.mlflow_setup import use_tracking_uri

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.pyfunc import PyFuncModel

CANDIDATE_ALIAS = "candidate"
DEDUPE_TAG = "vidgen.register_fingerprint"  # identity of what was registered: re-registering it is a no-op
MODEL_ARTIFACT_NAME = "model"  # name of the logged model (its folder in the artifact store)
_SCRIPTS = {"vae": "pyfunc_vae.py", "gan": "pyfunc_gan.py", "probe": "pyfunc_probe.py"}
_REQUIRED_FILES = ("config.json", "weights.safetensors")


def pyfunc_script(kind: Literal["vae", "gan", "probe"]) -> str:
    """Absolute path of the models-from-code script for ``kind``."""
    return str(Path(__file__).resolve().parent / _SCRIPTS[kind])


def _read_model_config(model_dir: str, what: str) -> dict[str, Any]:
    for f in _REQUIRED_FILES:
        if not storage.exists(storage.join(model_dir, f)):
            raise UserError(f"{what} '{model_dir}' has no {f}; pass a directory written by vidgen training")
    return json.loads(storage.read_bytes(storage.join(model_dir, "config.json")))


def _clip_shape(*configs: dict[str, Any]) -> tuple[int, int, int]:
    """(T, H, W) of the clips a model reads or writes, from config.json ``extra``."""
    for config in configs:
        extra = config.get("extra") or {}
        if "clip_len" in extra and "size" in extra:
            return int(extra["clip_len"]), int(extra["size"]), int(extra["size"])
    raise UserError("model config.json has no extra.clip_len / extra.size; re-save the model with vidgen")


def build_signature(kind: Literal["vae", "gan", "probe"], clip_shape: tuple[int, int, int]) -> ModelSignature:
    """Input/output schema that MLflow enforces on ``predict``.

    VAE: uint8 tensor ``(-1, T, H, W, 3)`` in and out. GAN: a ``label`` column
    (one row per sample) in, uint8 ``(-1, T, H, W, 3)`` out. Params: ``batch_size``
    (both) and ``seed`` (GAN).
    """
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    t, h, w = clip_shape
    video = Schema([TensorSpec(np.dtype(np.uint8), (-1, t, h, w, 3))])
    if kind == "vae":
        params = ParamSchema([ParamSpec("batch_size", "long", 8)])
        return ModelSignature(inputs=video, outputs=video, params=params)
    if kind == "probe":  # class probabilities (-1, C)
        probs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1))])
        return ModelSignature(inputs=video, outputs=probs, params=ParamSchema([ParamSpec("batch_size", "long", 16)]))
    params = ParamSchema([ParamSpec("seed", "long", 0), ParamSpec("batch_size", "long", 16)])
    return ModelSignature(inputs=Schema([ColSpec("long", "label")]), outputs=video, params=params)


def _pip_requirements() -> list[str]:
    # Everything the model needs comes with the vidgen package. Giving the list
    # explicitly also stops MLflow from loading the model to infer requirements.
    try:
        return [f"vidgen=={metadata.version('vidgen')}"]
    except metadata.PackageNotFoundError:
        return ["vidgen"]


def register_model(
    kind: Literal["vae", "gan", "probe"],
    model_dir: str,
    name: str,
    tags: dict[str, str],
    run_id: str | None = None,
    vae_dir: str | None = None,
    *,
    set_candidate: bool = True,
    tracking_uri: str | None = None,
    dedupe_key: str | None = None,
) -> dict[str, str]:
    """Log a saved model as a pyfunc, register a new version, tag it, alias it.

    Args:
        kind: "vae" or "gan".
        model_dir: directory written by ``vidgen_core.models.io.save_model``.
        name: registered model name, e.g. ``"vidgen-vae"``.
        tags: lineage tags set on the new model version (values become strings).
        run_id: MLflow run the logged model belongs to (e.g. the register step's
            run). None: the active fluent run if any, else no run (MLflow 3 allows it).
        vae_dir: the frozen VAE's model directory, for ``kind="gan"``; None uses
            ``extra.vae_dir`` of the GAN's config.json (written by GAN training).
        set_candidate: point the ``candidate`` alias at the new version (the
            caller's gate decides).
        tracking_uri: tracking/registry URI; None uses MLflow's current one.
        dedupe_key: identity of this registration (e.g. a hash of the training runs).
            If a version of ``name`` already carries it (tag ``vidgen.register_fingerprint``),
            that version is returned, re-tagged, instead of a duplicate: a register
            step re-run after a crash adds no version.

    Returns:
        ``{"name", "version", "model_uri", "reused"}`` with ``model_uri = "models:/NAME/VERSION"``,
        plus ``"alias_uri"`` (``models:/NAME@candidate``) when the alias was set.

    Raises:
        UserError: unknown kind, missing files, or a GAN without a VAE (one line).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import Model

    if kind not in _SCRIPTS:
        raise UserError(f"unknown model kind '{kind}': expected one of {sorted(_SCRIPTS)}")
    model_dir = storage.normalize(model_dir)
    config = _read_model_config(model_dir, "model_dir")
    if config.get("kind", kind) != kind:
        raise UserError(f"model_dir '{model_dir}' holds a '{config['kind']}' model, not '{kind}'")
    artifacts = {"model_dir": model_dir}
    configs = [config]
    if kind in ("gan", "probe"):
        # GAN training (and the probe) record the VAE they read; an explicit vae_dir wins.
        vae_dir = vae_dir or (config.get("extra") or {}).get("vae_dir")
        if not vae_dir:
            raise UserError(f"registering a {kind} needs vae_dir: the VAE model directory it reads")
        vae_dir = storage.normalize(vae_dir)
        configs.append(_read_model_config(vae_dir, "vae_dir"))
        artifacts["vae_dir"] = vae_dir
    signature = build_signature(kind, _clip_shape(*configs))

    all_tags = {**{k: str(v) for k, v in tags.items()}, "vidgen.kind": kind}
    if dedupe_key:
        all_tags[DEDUPE_TAG] = dedupe_key

    with use_tracking_uri(tracking_uri):
        client = MlflowClient()
        existing = find_version_by_tag(client, name, DEDUPE_TAG, dedupe_key) if dedupe_key else None
        if existing is not None:
            for key, value in all_tags.items():
                client.set_model_version_tag(name, existing, key, value)
            return _result(client, name, existing, set_candidate, reused=True)
        if run_id is None and (active := mlflow.active_run()) is not None:
            run_id = active.info.run_id
        model_id = None
        if run_id is not None:
            # Create the logged model ourselves so it lands in the run's experiment:
            # left alone, MLflow picks the *current* experiment (often "Default",
            # whose artifacts would go to ./mlruns under whatever the cwd is).
            model_id = client.create_logged_model(
                experiment_id=client.get_run(run_id).info.experiment_id,
                name=MODEL_ARTIFACT_NAME,
                source_run_id=run_id,
                tags={"vidgen.kind": kind},
            ).model_id
        with warnings.catch_warnings():
            # The signature fully describes the input; an example would only make
            # MLflow load and run the model once more at log time.
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            # Model.log (what mlflow.pyfunc.log_model calls) is used directly because
            # it takes an explicit run_id; pyfunc.log_model only reads the active run.
            info = Model.log(
                artifact_path=None,
                name=MODEL_ARTIFACT_NAME,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=model_id,
                python_model=pyfunc_script(kind),
                artifacts=artifacts,
                signature=signature,
                pip_requirements=_pip_requirements(),
            )
            # Registered separately so the version is created *with* its tags (the
            # dedupe key included) in one call: no window where a crash leaves an
            # untagged version that a re-run would duplicate.
            mv = mlflow.register_model(info.model_uri, name, tags=all_tags)
        return _result(client, name, str(mv.version), set_candidate, reused=False)


def _result(client: Any, name: str, version: str, set_candidate: bool, *, reused: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "version": version, "model_uri": f"models:/{name}/{version}", "reused": reused}
    if set_candidate:
        client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)
        result["alias_uri"] = f"models:/{name}@{CANDIDATE_ALIAS}"
    return result


def find_version_by_tag(client: Any, name: str, key: str, value: str) -> str | None:
    """Oldest version of registered model ``name`` whose tag ``key`` equals ``value``, or None."""
    versions = client.search_model_versions(f"name = '{name}' and tags.`{key}` = '{value}'")
    return str(min(int(v.version) for v in versions)) if versions else None


def load_pyfunc(uri: str, *, tracking_uri: str | None = None) -> PyFuncModel:
    """Load a registered (or any) pyfunc model, e.g. ``models:/vidgen-vae@candidate``.

    The model is downloaded first and checked (:mod:`artifact_safety`): an
    artifact that would unpickle anything is refused before MLflow reads it.

    Raises:
        UserError: the registered model, version or alias does not exist, or the
            artifact is not a vidgen models-from-code model (one line).
    """
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from vidgen_core.tracking.artifact_safety import check_logged_model

    with use_tracking_uri(tracking_uri):
        try:
            with tempfile.TemporaryDirectory(prefix="vidgen-model-") as tmp:
                local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
                check_logged_model(local)
                # Weights are read into memory by load_context: the folder may go afterwards.
                return mlflow.pyfunc.load_model(local)
        except MlflowException as exc:
            # Missing model/version: RESOURCE_DOES_NOT_EXIST; missing alias: INVALID_PARAMETER_VALUE.
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            if uri.startswith("models:/"):
                raise UserError(
                    f"unknown model URI '{uri}': no such registered model/alias; "
                    "list them with `vidgen models list`"
                ) from None
            reason = (str(exc.message).strip().splitlines() or ["not found"])[0]
            raise UserError(f"cannot load model '{uri}': {reason}") from None
