"""The pipeline as a DAG of steps, and the fingerprints that decide reuse.

A step's fingerprint = hash(step name, the config sections it reads, its
upstream steps' fingerprints, code version). Two runs of a step with the same
fingerprint compute the same thing, so a FINISHED run is reused; a change
upstream changes every fingerprint downstream of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vidgen_core.config import PipelineConfig, fingerprint

from workflows import steps


@dataclass(frozen=True)
class Step:
    """One node of the DAG.

    Attributes:
        name: unique step name (also the MLflow child run name).
        fn: ``run(cfg, inputs, ctx) -> outputs`` (outputs JSON-able).
        deps: names of steps whose outputs this step reads.
        config_keys: PipelineConfig sections that change what this step computes.
        num_cpus: CPUs the step's own Ray task holds. Driver-style steps that
            start Ray Data or Ray Train work of their own ask for 0, or they
            would starve the work they start on a small machine.
        num_gpus: GPUs the step's own task holds (training asks its workers for
            GPUs through ``train.use_gpu``, not here).
    """

    name: str
    fn: Callable[..., dict[str, Any]]
    deps: tuple[str, ...]
    config_keys: tuple[str, ...]
    num_cpus: float
    num_gpus: float = 0.0


PIPELINE: tuple[Step, ...] = (
    Step("synth", steps.synth, (), ("synth", "data"), 1),
    Step("ingest", steps.ingest, ("synth",), ("ingest", "data"), 0),
    Step("train_vae", steps.train_vae, ("ingest",), ("vae", "train_vae"), 0),
    Step("train_gan", steps.train_gan, ("ingest", "train_vae"), ("gan", "train_gan"), 0),
    Step("train_judge", steps.train_judge, ("ingest",), ("judge",), 1),
    Step("train_probe", steps.train_probe, ("ingest", "train_vae"), ("probe",), 1),
    # The codec's probability model is fitted here and registered with the VAE; evaluate does not
    # read it, so a codec setting re-runs only codec_eval and register.
    Step("codec_eval", steps.codec_eval, ("ingest", "train_vae"), ("codec",), 1),
    # evaluate scores the VAE *and* the GAN's samples, so a GAN change re-runs it.
    Step("evaluate", steps.evaluate, ("ingest", "train_vae", "train_gan", "train_judge"), ("eval",), 1),
    Step("register", steps.register, ("ingest", "train_vae", "train_gan", "evaluate", "train_probe", "codec_eval"),
         ("registry",), 0),
)

STEP_NAMES: tuple[str, ...] = tuple(s.name for s in PIPELINE)


def code_version() -> str:
    """Hash of the package sources: editing the code invalidates cached steps."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for pkg in ("vidgen_core", "workflows"):
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def sections_read(step: Step, cfg: PipelineConfig) -> tuple[str, ...]:
    """The config sections ``step`` reads under ``cfg``: its ``config_keys``, except that
    ``synth`` reads no ``synth.*`` setting when ``data.source`` names the user's videos
    (editing them must not re-ingest and retrain user data)."""
    if step.name == "synth" and cfg.data.source:
        return tuple(k for k in step.config_keys if k != "synth")
    return step.config_keys


def step_fingerprint(step: Step, cfg: PipelineConfig, upstream: dict[str, str], code: str) -> str:
    """hash(step name, the config sections it reads, its upstream fingerprints, code version)."""
    return fingerprint(
        {
            "step": step.name,
            "config": {k: getattr(cfg, k).model_dump(mode="json") for k in sections_read(step, cfg)},
            "upstream": [upstream[d] for d in step.deps],
            "code": code,
        }
    )


def step_fingerprints(cfg: PipelineConfig, code: str, pipeline: tuple[Step, ...] = PIPELINE) -> dict[str, str]:
    """Fingerprint of every step, in topological order."""
    out: dict[str, str] = {}
    for step in pipeline:
        out[step.name] = step_fingerprint(step, cfg, out, code)
    return out


def downstream_of(names: list[str], pipeline: tuple[Step, ...] = PIPELINE) -> set[str]:
    """The named steps and every step that depends on them, directly or not."""
    hit = set(names)
    for step in pipeline:  # topological order: one pass suffices
        if any(d in hit for d in step.deps):
            hit.add(step.name)
    return hit


def upstream_of(names: list[str], pipeline: tuple[Step, ...] = PIPELINE) -> set[str]:
    """Every step the named steps depend on, directly or not (the named steps excluded)."""
    deps = {s.name: s.deps for s in pipeline}
    hit: set[str] = set()
    todo = [d for n in names for d in deps.get(n, ())]
    while todo:
        name = todo.pop()
        if name not in hit:
            hit.add(name)
            todo.extend(deps[name])
    return hit


def check_pipeline(pipeline: tuple[Step, ...]) -> None:
    """Names unique, dependencies listed before their dependents (topological order)."""
    seen: set[str] = set()
    for step in pipeline:
        if step.name in seen:
            raise ValueError(f"step '{step.name}' appears twice")
        missing = [d for d in step.deps if d not in seen]
        if missing:
            raise ValueError(f"step '{step.name}' depends on '{missing[0]}', which is not listed before it")
        seen.add(step.name)
