"""Full training state to and from a directory: everything a resumed run needs to continue exactly.

    directory/state.pt    torch.save({"models", "optimizers", "averages", "rng", "data"})
    directory/meta.json   {"format_version": 2, "step": int, "extra": {...JSON-able...}}  (written last)

* ``models``: unwrapped state dicts (no ``module.`` / ``_orig_mod.`` prefix), so a
  checkpoint written by a DDP or compiled run loads into a bare model and back;
* ``optimizers``: per model, the :class:`~vidgen_core.train.optim.Optim` state
  (Adam moments, LR-schedule position and base LRs, fp16 loss scaler);
* ``averages``: EMA copies (:class:`~vidgen_core.train.ema.EMA`);
* ``rng``: torch (CPU and CUDA), numpy and Python generator states;
* ``data``: the position in the data stream (epoch, batches consumed), from the
  batch iterator's ``state_dict()`` when it has one.

``state.pt`` is read back with ``torch.load(weights_only=True)``: only tensors and
plain containers are accepted, so a tampered checkpoint cannot run code.
Torch/numpy only: the Ray adapter turns the directory into a ``ray.train.Checkpoint``.
"""

from __future__ import annotations

import copy
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from vidgen_core.train.loop import unwrap

STATE_FILE = "state.pt"
META_FILE = "meta.json"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: models + optimizers only


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class TrainingState:
    """Everything needed to continue a run after ``step`` finished steps.

    ``extra`` is JSON-able run data that must survive a resume (e.g. the GAN's
    ``latent_scale``, the last logged metrics, guardrail rollbacks).
    """

    step: int
    models: dict[str, dict[str, torch.Tensor]]
    optimizers: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    averages: dict[str, dict[str, Any]] = field(default_factory=dict)
    rng: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


# --------------------------------------------------------------------------- RNG


def capture_rng() -> dict[str, Any]:
    """Generator states of torch (CPU + every CUDA device), numpy and ``random``, as tensors and ints."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only when the device count matches)."""
    torch.set_rng_state(rng["torch"].cpu())
    cuda = rng.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = rng["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


# --------------------------------------------------------------------------- capture / save / load


def capture_state(
    step: int,
    models: dict[str, nn.Module],
    optimizers: dict[str, Stateful],
    extra: dict[str, Any] | None = None,
    *,
    averages: dict[str, Stateful] | None = None,
    data: Stateful | Any = None,
) -> TrainingState:
    """Snapshot references to the current state (save or :func:`copy_state` it before training continues).

    ``data`` is the batch iterator; its position is recorded when it has ``state_dict()``.
    """
    return TrainingState(
        step=int(step),
        models={name: unwrap(m).state_dict() for name, m in models.items()},
        optimizers={name: opt.state_dict() for name, opt in optimizers.items()},
        extra=dict(extra or {}),
        averages={name: a.state_dict() for name, a in (averages or {}).items()},
        rng=capture_rng(),
        data=data.state_dict() if hasattr(data, "state_dict") else None,
    )


def copy_state(state: TrainingState) -> TrainingState:
    """A deep copy with every tensor on the CPU: an in-memory checkpoint that training cannot mutate."""

    def detach(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj.detach().to("cpu", copy=True)
        if isinstance(obj, dict):
            return {k: detach(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(detach(v) for v in obj)
        return copy.deepcopy(obj)

    return TrainingState(
        step=state.step, models=detach(state.models), optimizers=detach(state.optimizers),
        extra=copy.deepcopy(state.extra), averages=detach(state.averages), rng=detach(state.rng),
        data=copy.deepcopy(state.data),
    )


def save_state(state: TrainingState, directory: str | os.PathLike) -> Path:
    """Write ``state`` into ``directory`` (created if missing); meta.json last marks it complete."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    blob = {
        "models": state.models, "optimizers": state.optimizers, "averages": state.averages,
        "rng": state.rng, "data": state.data,
    }
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, out / STATE_FILE)
    meta = {"format_version": FORMAT_VERSION, "step": state.step, "extra": state.extra}
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, out / META_FILE)
    return out


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed meta.json of a checkpoint directory (step, extra) without loading tensors."""
    d = Path(directory)
    if not (d / META_FILE).is_file() or not (d / STATE_FILE).is_file():
        raise FileNotFoundError(f"{d} is not a complete training checkpoint ({STATE_FILE} + {META_FILE})")
    meta = json.loads((d / META_FILE).read_text())
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{d}: unsupported checkpoint format_version {meta.get('format_version')!r}")
    return meta


def load_state(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> TrainingState:
    """Read a directory written by :func:`save_state` (tensors land on ``map_location``)."""
    d = Path(directory)
    meta = read_meta(d)
    blob = torch.load(d / STATE_FILE, map_location=map_location, weights_only=True)
    return TrainingState(
        step=int(meta["step"]), models=blob["models"], optimizers=blob["optimizers"], extra=meta.get("extra", {}),
        averages=blob.get("averages") or {}, rng=blob.get("rng"), data=blob.get("data"),
    )


def restore_state(
    state: TrainingState,
    models: dict[str, nn.Module],
    optimizers: dict[str, Stateful],
    *,
    averages: dict[str, Stateful] | None = None,
    data: Any = None,
    rng: bool = True,
) -> int:
    """Load ``state`` into (possibly wrapped) models, optimizers, EMAs, the data iterator and RNGs.

    Every named model/optimizer/average must be in the checkpoint: resuming with
    a partial state would silently restart part of the run. Returns ``state.step``.
    """
    averages = averages or {}
    missing = (
        [n for n in models if n not in state.models]
        + [n for n in optimizers if n not in state.optimizers]
        + [f"{n} (EMA)" for n in averages if n not in state.averages]
    )
    if missing:
        raise KeyError(f"checkpoint at step {state.step} has no state for {missing}")
    for name, model in models.items():
        unwrap(model).load_state_dict(state.models[name], strict=True)
    for name, opt in optimizers.items():
        opt.load_state_dict(state.optimizers[name])
    for name, avg in averages.items():
        avg.load_state_dict(state.averages[name])
    if data is not None and state.data is not None and hasattr(data, "load_state_dict"):
        data.load_state_dict(state.data)
    if rng and state.rng is not None:
        restore_rng(state.rng)
    return state.step
