"""`vidgen models list | show | promote`: the registry, read and steered from the command line.

Each function returns the lines to print; every user-caused problem (no such
model/version/alias, an unreachable server, a malformed URI) is a one-line
:class:`UserError`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidgen_core.errors import UserError
from vidgen_core.tracking.promotion import DECISION_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))$")
HEADLINE = ("vae_psnr", "vae_ssim", "vae_psnr_gain_db", "gan_diversity_ratio")
LINEAGE = ("data_manifest_fingerprint", "config_hash", "git_commit", "code_version", "pipeline_run_id",
           "register_run_id", "train_run_id", "vae_model_version")


def open_registry(tracking_uri: str) -> MlflowClient:
    """A client for ``tracking_uri``; an absent SQLite file or a dead server is a UserError."""
    from mlflow import MlflowClient

    from vidgen_core.tracking.mlflow_setup import check_reachable, sqlite_path

    db = sqlite_path(tracking_uri)
    if db is not None and not Path(db).is_file():
        raise UserError(f"no MLflow store at '{db}': run `vidgen run` first, or pass --workdir / set MLFLOW_TRACKING_URI")
    check_reachable(tracking_uri)
    return MlflowClient(tracking_uri)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` -> (name, version, alias)."""
    m = _URI.match(uri.strip())
    if m is None:
        raise UserError(f"bad model URI '{uri}': expected models:/NAME/VERSION or models:/NAME@ALIAS")
    return m["name"], m["version"], m["alias"]


def _version(client: MlflowClient, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    try:
        return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise UserError(f"unknown model URI '{uri}': no such registered model/alias; list them with `vidgen models list`") from None
        raise


def _aliases_of(client: MlflowClient, name: str) -> dict[str, list[str]]:
    """version -> aliases pointing at it."""
    out: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        out.setdefault(str(version), []).append(alias)
    return out


def _num(text: str) -> str:
    """A metric tag (stored at full precision) for reading: 4 significant digits."""
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "-"


def list_models(client: MlflowClient, prefix: str | None = None) -> list[str]:
    """One block per registered model: each version with its aliases and headline metrics."""
    models = [m for m in client.search_registered_models(max_results=1000) if not prefix or m.name.startswith(prefix)]
    if not models:
        return ["no registered models" + (f" named {prefix}*" if prefix else "") + " yet"]
    lines: list[str] = []
    for model in sorted(models, key=lambda m: m.name):
        aliases = _aliases_of(client, model.name)
        versions = sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: -int(v.version))
        lines.append(f"{model.name}  ({len(versions)} version{'s' if len(versions) != 1 else ''})")
        for v in versions:
            tags = v.tags or {}
            alias = " ".join(f"@{a}" for a in sorted(aliases.get(str(v.version), [])))
            metrics = "  ".join(f"{k}={_num(tags[k])}" for k in HEADLINE if k in tags)
            lines.append(f"  v{v.version:<4} {alias:<22} {_when(v.creation_timestamp)}  {metrics}")
    return lines


def show_model(client: MlflowClient, uri: str) -> list[str]:
    """Everything about one version: aliases, lineage, metrics, the promotion decision, its source."""
    v = _version(client, uri)
    tags = dict(v.tags or {})
    aliases = _aliases_of(client, v.name).get(str(v.version), [])
    lines = [
        f"{v.name} version {v.version}" + "".join(f" @{a}" for a in sorted(aliases)),
        f"  created      {_when(v.creation_timestamp)}",
        f"  source       {v.source}",
        f"  run          {v.run_id or '-'}",
        f"  decision     {tags.pop(DECISION_TAG, '-')}",
        "  lineage:",
    ]
    lines += [f"    {k:<26} {tags.pop(k)}" for k in LINEAGE if k in tags]
    from vidgen_core.config import EVAL_METRICS

    lines.append("  metrics:")
    lines += [f"    {k:<26} {_num(tags.pop(k))}" for k in EVAL_METRICS if k in tags]
    if tags:
        lines.append("  other tags:")
        lines += [f"    {k:<26} {tags[k]}" for k in sorted(tags)]
    return lines


def promote(client: MlflowClient, name: str, version: str, alias: str = "champion") -> list[str]:
    """Point ``alias`` of ``name`` at ``version`` by hand; the reason is tagged on the version."""
    from mlflow.exceptions import MlflowException

    if not re.fullmatch(r"[A-Za-z0-9_-]+", alias) or alias.isdigit():
        raise UserError(f"bad alias '{alias}': letters, digits, '_' or '-', not only digits")
    _version(client, f"models:/{name}/{version}")  # exists? (one-line error if not)
    try:
        before = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        before = None
    client.set_registered_model_alias(name, alias, version)
    reason = f"manual: @{alias} set by `vidgen models promote`" + (f" (was v{before})" if before else "")
    client.set_model_version_tag(name, version, DECISION_TAG, reason)
    lines = [f"{name} @{alias} -> version {version}" + (f" (was version {before})" if before else "")]
    if name.endswith("-vae"):
        lines.append(f"note: the GAN trained on this VAE is the {name[:-4]}-gan version tagged vae_model_version={version}")
    return lines
