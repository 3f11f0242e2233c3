"""Candidate/champion policy: gates, the champion comparison, and applying the decision.

Two aliases per registered model:

* ``candidate`` — the latest version that passed the gates
  (``registry.min_psnr_gain_db``, ``registry.min_metrics``, ``registry.max_metrics``);
* ``champion`` — the best version so far by ``registry.champion_metric``. It moves
  only when a version passes the gates *and* beats the current champion's value
  by at least ``registry.min_improvement`` (direction: ``greater_is_better``).
  With no champion yet, the first version that passes the gates becomes it.

The VAE and the GAN registered by one pipeline run are a pair (the GAN models
that VAE's latent space), so one decision moves both models' aliases. The
champion's metric value is read from the lineage tags of the current
``<prefix>-vae@champion`` version. :func:`decide` is pure; :func:`apply_decision`
writes aliases and tags.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from vidgen_core.config import RegisterConfig

if TYPE_CHECKING:
    from mlflow import MlflowClient

CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"
DECISION_TAG = "vidgen.promotion"


@dataclass(frozen=True)
class Champion:
    """The current champion: its version (of the primary model) and its metric value."""

    version: str
    value: float | None
    manifest: str | None = None


@dataclass(frozen=True)
class Decision:
    gate_passed: bool
    promote: bool  # champion moves to the new version
    reason: str  # one line, logged and printed
    metric: str
    value: float | None
    champion_version: str | None = None
    champion_value: float | None = None
    gate_failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate_failures(metrics: dict[str, Any], cfg: RegisterConfig) -> list[str]:
    """Every gate the metrics fail, as readable phrases (empty: all passed)."""
    out: list[str] = []
    gain = _get(metrics, "vae_psnr_gain_db")
    if gain is None and _get(metrics, "vae_psnr") is not None and _get(metrics, "baseline_psnr") is not None:
        gain = metrics["vae_psnr"] - metrics["baseline_psnr"]
    if gain is None or gain < cfg.min_psnr_gain_db:
        out.append(f"VAE PSNR gain over the mean-frame baseline {_fmt(gain)} dB < {cfg.min_psnr_gain_db} dB")
    ssim, base_ssim = _get(metrics, "vae_ssim"), _get(metrics, "baseline_ssim")
    if ssim is None or base_ssim is None or not ssim - base_ssim > cfg.min_ssim_gain:
        out.append(f"VAE SSIM {_fmt(ssim)} not above the mean-frame baseline's {_fmt(base_ssim)} by > {cfg.min_ssim_gain}")
    colour = _get(metrics, "vae_colour_ratio")
    if colour is None or colour < cfg.min_colour_ratio:
        out.append(f"VAE colour ratio {_fmt(colour)} < {cfg.min_colour_ratio} (reconstructions lose colour)")
    if cfg.gan_must_beat_prior:
        for figure in cfg.gan_prior_metrics:
            gan, prior = _get(metrics, f"gan_{figure}"), _get(metrics, f"prior_{figure}")
            lower = figure == "fd"  # a distance; every other figure is better higher
            if gan is None or prior is None or not (gan < prior if lower else gan > prior):
                name = "Fréchet distance" if lower else figure.replace("_", " ")
                out.append(f"GAN {name} {_fmt(gan)} not {'below' if lower else 'above'} the VAE-prior baseline's {_fmt(prior)}")
    for name, bound in sorted(cfg.min_metrics.items()):
        v = _get(metrics, name)
        if v is None or v < bound:
            out.append(f"{name} {_fmt(v)} < {bound}")
    for name, bound in sorted(cfg.max_metrics.items()):
        v = _get(metrics, name)
        if v is None or v > bound:
            out.append(f"{name} {_fmt(v)} > {bound}")
    return out


def decide(
    metrics: dict[str, Any], cfg: RegisterConfig, champion: Champion | None, new_version: str,
    manifest: str | None = None,
) -> Decision:
    """Whether the new version becomes candidate (gates) and champion (gates + comparison).

    ``manifest`` is the new version's data manifest fingerprint: a champion measured
    on other test data is not comparable, so it is replaced by the first version
    that passes the gates on this data (said so in the reason).
    """
    metric = cfg.champion_metric
    value = _get(metrics, metric)
    failures = gate_failures(metrics, cfg)
    base = {"metric": metric, "value": value, "gate_failures": failures,
            "champion_version": champion.version if champion else None,
            "champion_value": champion.value if champion else None}
    if failures:
        return Decision(False, False, f"gates failed ({'; '.join(failures)}): candidate and champion unchanged", **base)
    if value is None:
        return Decision(True, False, f"candidate set; champion unchanged: no '{metric}' in the evaluation", **base)
    if champion is None:
        return Decision(True, True, f"candidate set; champion set: first version to pass the gates ({metric} {_fmt(value)})", **base)
    if champion.version == new_version:
        return Decision(True, False, f"candidate set; already champion ({metric} {_fmt(value)})", **base)
    if champion.value is None:
        return Decision(True, True, f"candidate set; champion moved from v{champion.version}, which has no '{metric}' tag", **base)
    if manifest is not None and champion.manifest != manifest:
        return Decision(
            True, True,
            f"candidate set; champion moved from v{champion.version}, which was measured on other data "
            f"(manifest {champion.manifest or 'unknown'} vs {manifest}): their {metric} values are not comparable",
            **base,
        )
    sign = 1.0 if cfg.greater_is_better else -1.0
    gain = sign * (value - champion.value)
    better = "higher" if cfg.greater_is_better else "lower"
    if gain > 0 and gain >= cfg.min_improvement:
        return Decision(
            True, True,
            f"candidate set; champion moved from v{champion.version}: {metric} {_fmt(value)} vs {_fmt(champion.value)} "
            f"({better} is better, improvement {_fmt(gain)} >= {cfg.min_improvement})",
            **base,
        )
    return Decision(
        True, False,
        f"candidate set; champion stays v{champion.version}: {metric} {_fmt(value)} vs {_fmt(champion.value)} "
        f"({better} is better, needs an improvement of at least {cfg.min_improvement} and > 0)",
        **base,
    )


def current_champion(client: MlflowClient, name: str, metric: str) -> Champion | None:
    """The ``champion`` version of ``name`` and its tagged ``metric`` value, or None."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
    raw = mv.tags.get(metric)
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        value = None
    return Champion(str(mv.version), value, mv.tags.get("data_manifest_fingerprint"))


def apply_decision(client: MlflowClient, versions: dict[str, str], decision: Decision) -> None:
    """Move aliases of every ``{name: version}`` as decided; tag each version with the reason."""
    for name, version in versions.items():
        if decision.gate_passed:
            client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)
        if decision.promote:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        client.set_model_version_tag(name, version, DECISION_TAG, decision.reason[:5000])


def _get(metrics: dict[str, Any], name: str) -> float | None:
    v = metrics.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return None
    return float(v)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"
