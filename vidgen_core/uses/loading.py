"""Load a registered vidgen model for a use, check it is the right kind, read its lineage.

A use needs more than ``predict``: the network itself (the VAE's ``encode``,
the GAN's label names), the ingest settings its clips were cut with, and an
identity to stamp on what it writes (embeddings from one model must not be
searched with another). :class:`LoadedModel` carries all three.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from vidgen_core.config import IngestConfig
from vidgen_core.errors import UserError

INGEST_TAG = "ingest_config"  # JSON of the IngestConfig the model's training clips were cut with
_COMMAND_HINT = {"vae": "models:/vidgen-vae@champion", "gan": "models:/vidgen-gan@champion",
                 "probe": "models:/vidgen-probe@champion"}


@dataclass
class LoadedModel:
    """A registered model rebuilt from code + safetensors.

    Attributes:
        uri: the URI it was loaded from, as given.
        kind: "vae", "gan" or "probe" (config.json ``kind``).
        python_model: the pyfunc's PythonModel (``.vae``, ``.generator``, ``.probe``, ``.config``).
        pyfunc: the MLflow PyFuncModel (``predict``).
        name / version: the registered model version it resolved to (None for ``runs:/`` URIs).
        tags: that version's tags (lineage), {} when not registered.
        digest: sha256 of the weights that do the job (first 16 hex): the model's identity.
    """

    uri: str
    kind: str
    python_model: Any
    pyfunc: Any
    name: str | None = None
    version: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    digest: str = ""

    @property
    def config(self) -> dict[str, Any]:
        return self.python_model.config

    @property
    def extra(self) -> dict[str, Any]:
        return self.python_model.config.get("extra") or {}

    @property
    def version_uri(self) -> str:
        """``models:/NAME/VERSION`` when registered, else the URI as given."""
        return f"models:/{self.name}/{self.version}" if self.name and self.version else self.uri


def module_digest(module: torch.nn.Module) -> str:
    """sha256 (16 hex) over a module's state dict, in key order: same weights, same digest."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _resolve_version(uri: str, tracking_uri: str) -> tuple[str | None, str | None, dict[str, str]]:
    """(name, version, tags) of a ``models:/`` URI; an unknown model/alias is a one-line UserError."""
    if not uri.startswith("models:/"):
        return None, None, {}
    from vidgen_core.tracking.models_cli import _version, open_registry

    client = open_registry(tracking_uri)
    v = _version(client, uri)
    return str(v.name), str(v.version), dict(v.tags or {})


def load_for_use(uri: str, expect: str, command: str, *, tracking_uri: str | None = None) -> LoadedModel:
    """Load ``uri`` and check that it is a ``expect`` model ("vae", "gan", "probe").

    ``tracking_uri`` None: ``$MLFLOW_TRACKING_URI``, else ``./vidgen-work``'s SQLite store.

    Raises:
        UserError: unknown URI/alias, unreachable store, or a model of another kind
            (one line that says what was expected).
    """
    from vidgen_core.tracking.mlflow_setup import resolve_tracking_uri
    from vidgen_core.tracking.registry import load_pyfunc

    tracking_uri = resolve_tracking_uri(tracking_uri, "vidgen-work")
    name, version, tags = _resolve_version(uri, tracking_uri)
    kind = tags.get("vidgen.kind")
    if kind and kind != expect:  # refuse before downloading the wrong model
        raise UserError(f"'{uri}' is a {kind} model; `vidgen {command}` needs a {expect} model, e.g. {_COMMAND_HINT[expect]}")
    pyfunc = load_pyfunc(uri, tracking_uri=tracking_uri)
    try:
        python_model = pyfunc.unwrap_python_model()
    except Exception:  # noqa: BLE001 - any non-vidgen pyfunc lands here
        raise UserError(f"'{uri}' is not a vidgen model; `vidgen {command}` needs a {expect} model") from None
    kind = (getattr(python_model, "config", None) or {}).get("kind")
    if kind != expect:
        raise UserError(f"'{uri}' is a {kind} model; `vidgen {command}` needs a {expect} model, e.g. {_COMMAND_HINT[expect]}")
    core = {"vae": "vae", "gan": "generator", "probe": "probe"}[expect]
    return LoadedModel(uri, kind, python_model, pyfunc, name, version, tags, module_digest(getattr(python_model, core)))


def ingest_config_of(model: LoadedModel) -> IngestConfig:
    """The ingest settings the model's clips were cut with.

    Order: the registered version's ``ingest_config`` tag (written by the register
    step), else ``extra.ingest`` of config.json, else the defaults with the
    model's ``clip_len`` and ``size`` (always in config.json).
    """
    raw = model.tags.get(INGEST_TAG) or model.extra.get("ingest")
    base: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    clip_len, size = model.extra.get("clip_len"), model.extra.get("size")
    if clip_len is None or size is None:
        raise UserError(f"'{model.uri}' has no clip_len/size in its config.json; re-register it with vidgen")
    # The network's input shape wins over any recorded setting: it is what the weights expect.
    return IngestConfig(**{**base, "clip_len": int(clip_len), "size": int(size)})
