"""The executor on a small diamond DAG of sleeping steps: concurrency, reuse, --force, --from, reaping."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from vidgen_core.config import PipelineConfig
from workflows.dag import Step

pytestmark = pytest.mark.integration

NAP_S = 2.0
MEET_S = 60.0  # how long a nap waits for its sibling to start: a Ray worker can take seconds to start on a loaded host


def _start(cfg, inputs, ctx):
    return {"at": time.time()}


def _nap(cfg, inputs, ctx):
    """Mark this step started, wait (up to MEET_S) until both naps have, then nap.

    The rendezvous makes "ran concurrently" independent of how fast the host starts the
    second step's worker: a serial executor leaves the first nap waiting in vain (met False).
    """
    started = Path(ctx.workdir) / "naps-started"
    started.mkdir(exist_ok=True)
    (started / ctx.name).touch()
    t0 = time.time()
    while not (met := {p.name for p in started.iterdir()} >= {"b", "c"}) and time.time() - t0 < MEET_S:
        time.sleep(0.05)
    time.sleep(NAP_S)
    return {"t0": t0, "t1": time.time(), "met": met}


def _join(cfg, inputs, ctx):
    return {"inputs": sorted(inputs)}


# a -> (b, c) -> d; b and c each hold no CPU, so both can run at once on any machine.
DIAMOND = (
    Step("a", _start, (), ("synth",), 0),
    Step("b", _nap, ("a",), ("train_vae",), 0),
    Step("c", _nap, ("a",), ("train_gan",), 0),
    Step("d", _join, ("b", "c"), ("eval",), 0),
)


@pytest.fixture(scope="module", autouse=True)
def _steps_by_value():
    # Ray workers cannot import this test module by name: ship its functions by value.
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _run(workdir: Path, **kwargs):
    from workflows.executor import run_pipeline

    cfg = PipelineConfig.model_validate({"tracking": {"experiment": "dag-test"}})
    return run_pipeline(cfg, workdir, echo=lambda _: None, pipeline=DIAMOND, **kwargs)


def _ran(result) -> set[str]:
    return {name for name, rec in result.steps.items() if not rec.reused}


def test_ready_steps_run_concurrently_then_everything_is_reused(ray_cluster, tmp_path: Path) -> None:
    first = _run(tmp_path)
    b, c = first.outputs("b"), first.outputs("c")
    assert b["met"] and c["met"], (b, c)  # each saw the other start while it ran
    assert b["t0"] < c["t1"] and c["t0"] < b["t1"], (b, c)  # the two naps overlapped
    assert first.outputs("d") == {"inputs": ["b", "c"]}
    assert _ran(first) == {"a", "b", "c", "d"}

    second = _run(tmp_path)
    assert _ran(second) == set()
    assert {n: r.run_id for n, r in second.steps.items()} == {n: r.run_id for n, r in first.steps.items()}
    assert second.duration_s < NAP_S


def test_force_reruns_downstream_and_from_survives_a_code_change(ray_cluster, tmp_path: Path, monkeypatch) -> None:
    import mlflow

    from workflows.steps import earlier_outputs

    first = _run(tmp_path)
    # What b's first run left (outputs, Ray Train checkpoints): a forced b must not resume from it.
    leftovers = [Path(p) / "checkpoint_000007" for p in earlier_outputs(str(tmp_path), "b", first.steps["b"].fingerprint)]
    for path in leftovers:
        path.mkdir(parents=True)
    forced = _run(tmp_path, force=["b"])
    assert _ran(forced) == {"b", "d"}
    assert not any(path.exists() for path in leftovers)
    assert forced.steps["d"].fingerprint == first.steps["d"].fingerprint  # same inputs, recomputed anyway

    # A code edit moves every fingerprint: without --from everything would run again.
    monkeypatch.setattr("workflows.executor.code_version", lambda: "edited")
    resumed = _run(tmp_path, from_steps=["c"])
    assert _ran(resumed) == {"c", "d"}
    assert resumed.steps["a"].run_id == first.steps["a"].run_id
    assert resumed.steps["b"].run_id == forced.steps["b"].run_id  # the newest run of b
    client = mlflow.MlflowClient(resumed.tracking_uri)
    tags = client.get_run(resumed.steps["c"].run_id).data.tags
    assert tags["vidgen.upstream"] == f'{{"a": "{first.steps["a"].fingerprint}"}}'


def test_runs_of_a_killed_driver_are_marked_killed(ray_cluster, tmp_path: Path) -> None:
    import mlflow

    from vidgen_core.errors import UserError
    from workflows.liveness import DRIVER_TAG, driver_id

    first = _run(tmp_path)
    client = mlflow.MlflowClient(first.tracking_uri)
    dead = driver_id().rsplit(":", 1)[0] + ":0"  # this host and pid, another start time: gone
    ghost = client.create_run(first.experiment_id, tags={DRIVER_TAG: dead, "vidgen.kind": "step"})
    _run(tmp_path)
    run = client.get_run(ghost.info.run_id)
    assert run.info.status == "KILLED"
    assert "is gone" in run.data.tags["vidgen.killed_reason"]

    # A live pipeline in the same work dir is refused, not raced.
    live = client.create_run(first.experiment_id, tags={DRIVER_TAG: driver_id(1), "vidgen.kind": "pipeline",
                                                        "vidgen.workdir": str(tmp_path)})
    with pytest.raises(UserError, match="another vidgen run"):
        _run(tmp_path)
    client.set_terminated(live.info.run_id)
    with pytest.raises(UserError, match="unknown step 'z' for --from"):
        _run(tmp_path, from_steps=["z"])
