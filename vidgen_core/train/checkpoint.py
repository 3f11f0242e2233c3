"""Full training state (models, optimizers, step) to and from a directory.

    directory/state.pt    torch.save({"models": {name: state_dict}, "optimizers": {name: state_dict}})
    directory/meta.json   {"format_version": 1, "step": int, "extra": {...JSON-able...}}  (written last)

``state.pt`` is read back with ``torch.load(weights_only=True)``: only tensors and
plain containers are accepted, so a tampered checkpoint cannot run code. Model
state dicts are taken from the unwrapped module (no ``module.`` prefix), so a
checkpoint written by a DDP run loads into a single-process model and back.
Torch-only: the Ray adapter turns the directory into a ``ray.train.Checkpoint``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE_FILE = "state.pt"
META_FILE = "meta.json"
FORMAT_VERSION = 1


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


@dataclass
class TrainingState:
    """Everything needed to continue a run after ``step`` finished steps.

    ``extra`` is JSON-able run data that must survive a resume (e.g. the GAN's
    ``latent_scale``, the last logged metrics).
    """

    step: int
    models: dict[str, dict[str, torch.Tensor]]
    optimizers: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


def capture_state(
    step: int,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    extra: dict[str, Any] | None = None,
) -> TrainingState:
    """Snapshot references to the current state (save it before training continues)."""
    return TrainingState(
        step=int(step),
        models={name: _unwrap(m).state_dict() for name, m in models.items()},
        optimizers={name: opt.state_dict() for name, opt in optimizers.items()},
        extra=dict(extra or {}),
    )


def save_state(state: TrainingState, directory: str | os.PathLike) -> Path:
    """Write ``state`` into ``directory`` (created if missing); meta.json last marks it complete."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    blob = {"models": state.models, "optimizers": state.optimizers}
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, out / STATE_FILE)
    meta = {"format_version": FORMAT_VERSION, "step": state.step, "extra": state.extra}
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, out / META_FILE)
    return out


def load_state(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> TrainingState:
    """Read a directory written by :func:`save_state` (tensors land on ``map_location``)."""
    d = Path(directory)
    if not (d / META_FILE).is_file() or not (d / STATE_FILE).is_file():
        raise FileNotFoundError(f"{d} is not a complete training checkpoint ({STATE_FILE} + {META_FILE})")
    meta = json.loads((d / META_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{d}: unsupported checkpoint format_version {meta.get('format_version')!r}")
    blob = torch.load(d / STATE_FILE, map_location=map_location, weights_only=True)
    return TrainingState(
        step=int(meta["step"]), models=blob["models"], optimizers=blob["optimizers"], extra=meta.get("extra", {})
    )


def restore_state(
    state: TrainingState,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> int:
    """Load ``state`` into (possibly DDP-wrapped) models and their optimizers; returns ``state.step``.

    Every name must be present in the checkpoint: resuming with a partial state
    would silently restart part of the run.
    """
    missing = [n for n in models if n not in state.models] + [n for n in optimizers if n not in state.optimizers]
    if missing:
        raise KeyError(f"checkpoint at step {state.step} has no state for {missing}")
    for name, model in models.items():
        _unwrap(model).load_state_dict(state.models[name], strict=True)
    for name, opt in optimizers.items():
        opt.load_state_dict(state.optimizers[name])
    return state.step
