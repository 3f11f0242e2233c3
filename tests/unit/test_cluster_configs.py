"""The cluster configs in cluster/ are checked, not just shipped.

`ray-cluster.yaml` against the JSON schema inside the installed ray package (what
`ray up` validates with); the KubeRay manifests for the fields KubeRay needs and
for vidgen's own requirements: token auth, the shared volume on every pod, a
vidgen entrypoint. The configs are never applied here (no cloud, no Kubernetes).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def test_ray_cluster_yaml_validates_against_rays_own_schema() -> None:
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, schema)  # raises with the offending key
    assert config["head_node_type"] in config["available_node_types"]
    # Token auth on every node, the token file shipped to every node, the job API private.
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "~/.ray/auth_token" in config["file_mounts"]
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head
    # The same torch pin as `make run`, installed before the project.
    makefile = (CLUSTER.parent / "Makefile").read_text()
    pin = next(tok for tok in makefile.split() if tok.startswith("torch=="))
    assert any(pin in c for c in config["setup_commands"])


def test_schema_check_catches_a_bad_key() -> None:
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    config["head_start_ray_command"] = config.pop("head_start_ray_commands")  # a typo ray up would reject
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _check_cluster_spec(spec: dict, where: str) -> None:
    assert spec.get("authOptions", {}).get("mode") == "token", f"{where}: token auth off"
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    for name, group in groups:
        assert isinstance(group["rayStartParams"], dict), f"{where} {name}: rayStartParams"
        pod = group["template"]
        for c in _containers(pod):
            assert c["image"] and c["name"], f"{where} {name}: image/name"
            res = c["resources"]
            assert res["limits"]["cpu"] and res["limits"]["memory"], f"{where} {name}: resources"
            assert any(m["mountPath"] == "/mnt/shared" for m in c.get("volumeMounts", [])), f"{where} {name}: shared volume"
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert claims == ["vidgen-shared"], f"{where} {name}: volume"
    for g in spec["workerGroupSpecs"]:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], f"{where} {g['groupName']}: replicas"


def test_kuberay_raycluster_has_what_kuberay_and_vidgen_need() -> None:
    doc = yaml.safe_load((CLUSTER / "kuberay-raycluster.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster") and doc["metadata"]["name"]
    _check_cluster_spec(doc["spec"], "RayCluster")


def test_kuberay_rayjob_has_what_kuberay_and_vidgen_need() -> None:
    from workflows.cli import main

    doc = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob") and doc["metadata"]["name"]
    spec = doc["spec"]
    _check_cluster_spec(spec["rayClusterSpec"], "RayJob")
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env["MLFLOW_TRACKING_URI"].startswith("http")
    # The entrypoint is a `vidgen run` whose options and --set keys this vidgen accepts.
    argv = shlex.split(spec["entrypoint"])
    assert argv[:4] == ["python", "-m", "workflows.cli", "run"]
    params = main.commands["run"].make_context("run", argv[4:]).params
    assert params["workdir"].startswith("/mnt/shared/")
    from vidgen_core.config import load_config

    cfg = load_config(None, list(params["overrides"]))
    assert cfg.storage.shared and cfg.train_vae.use_gpu
