"""Save and load trained models as ``config.json`` + ``weights.safetensors``.

A model directory is code-independent data: the JSON names the model kind and
its config, the safetensors file holds the state dict. Loading rebuilds the
module from vidgen_core code and never unpickles anything, so a model from an
untrusted registry cannot execute code.

    out_dir/config.json          {"format_version": 1, "kind": "vae" | "gan" | "gan_discriminator",
                                  "model_config": {...}, "extra": {...}}
    out_dir/weights.safetensors  the unwrapped module's state_dict

``extra`` holds what the constructor needs beyond the config (GAN:
``latent_shape``, ``num_classes``) and what users of the model need
(``clip_len``, ``size``, ``latent_scale``, ...).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vidgen_core.models.gan import LatentDiscriminator, build_generator
from vidgen_core.models.judge import JudgeEnsemble, VideoJudge
from vidgen_core.models.vae import VideoVAE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1
KINDS = ("vae", "gan", "gan_discriminator", "judge")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP/FSDP-style wrappers (``.module``) and torch.compile (``._orig_mod``)."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def build_model(kind: str, model_config: dict[str, Any], extra: dict[str, Any]) -> nn.Module:
    """Construct an untrained module of ``kind`` from its JSON config (and ``extra``).

    Raises:
        ValueError: the config lacks a setting this version's architecture reads
            (a model saved by an older vidgen: there are no compatibility shims in 0.x).
    """
    try:
        return _build(kind, SimpleNamespace(**model_config), model_config, extra)
    except AttributeError as exc:
        if exc.name is None or exc.name in model_config:
            raise
        raise ValueError(
            f"this '{kind}' model's config.json has no '{exc.name}': it was saved by an older vidgen; "
            "train it again with this version"
        ) from None


def _build(kind: str, cfg: SimpleNamespace, model_config: dict[str, Any], extra: dict[str, Any]) -> nn.Module:
    if kind == "vae":
        return VideoVAE(cfg)
    if kind == "judge":
        k, width, standardise = int(extra["num_classes"]), int(cfg.width), bool(cfg.standardise)
        members = [VideoJudge(k, width, standardise) for _ in range(int(cfg.members))]
        return members[0] if len(members) == 1 else JudgeEnsemble(members)
    if kind in ("gan", "gan_discriminator"):
        missing = [k for k in ("latent_shape", "num_classes") if k not in extra]
        if missing:
            raise ValueError(f"a '{kind}' model needs extra {missing} in its config.json")
        if kind == "gan":  # LatentGenerator or PixelGenerator, by model_config["space"]
            return build_generator(cfg, tuple(extra["latent_shape"]), int(extra["num_classes"]))
        return LatentDiscriminator(cfg, tuple(extra["latent_shape"]), int(extra["num_classes"]))
    raise ValueError(f"unknown model kind '{kind}', expected one of {', '.join(KINDS)}")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_model(
    model: nn.Module,
    kind: str,
    model_config: dict[str, Any],
    out_dir: str | os.PathLike,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/weights.safetensors`` then ``out_dir/config.json`` (last: marks it complete).

    Args:
        model: the module, possibly DDP-wrapped (unwrapped here).
        kind: "vae", "gan" (the generator) or "gan_discriminator".
        model_config: JSON-able constructor config (``VAEConfig``/``GANConfig`` dumped).
        out_dir: local directory, created if missing; existing files are replaced.
        extra: JSON-able constructor arguments and metadata.
    Returns:
        ``out_dir`` as a Path.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown model kind '{kind}', expected one of {', '.join(KINDS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # safetensors wants contiguous, non-shared CPU tensors; clone() also breaks any sharing.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in unwrap(model).state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"kind": kind})
    os.replace(tmp, out / WEIGHTS_FILE)
    doc = {"format_version": FORMAT_VERSION, "kind": kind, "model_config": model_config, "extra": extra or {}}
    _atomic_write_bytes(out / CONFIG_FILE, json.dumps(doc, indent=2, sort_keys=True).encode())
    return out


def update_extra(model_dir: str | os.PathLike, values: dict[str, Any]) -> dict[str, Any]:
    """Merge JSON-able ``values`` into a saved model's ``extra`` (config.json rewritten atomically); returns the doc."""
    doc = read_model_config(model_dir)
    doc["extra"] = {**(doc.get("extra") or {}), **values}
    _atomic_write_bytes(Path(model_dir) / CONFIG_FILE, json.dumps(doc, indent=2, sort_keys=True).encode())
    return doc


def read_model_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory (clear error if it is not one)."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a model directory: {CONFIG_FILE} is missing")
    doc = json.loads(path.read_text())
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {doc.get('format_version')!r}, expected {FORMAT_VERSION}")
    return doc


def load_model(model_dir: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved model: (module in eval mode on ``device``, the config.json dict).

    Weights are read with safetensors only (no pickle); keys must match exactly.
    """
    doc = read_model_config(model_dir)
    model = build_model(doc["kind"], doc["model_config"], doc.get("extra", {}))
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{model_dir} is not a model directory: {WEIGHTS_FILE} is missing")
    model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    return model.to(device).eval(), doc
