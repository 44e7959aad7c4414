"""The cluster files in cluster/ parse, validate, and describe a cluster the tuner can use.

`ray-cluster.yaml` is checked against Ray's own cluster-config schema (shipped in the ray package)
and then by Ray's own validator, after Ray fills in its AWS defaults exactly as `ray up` does.
The KubeRay manifests are checked for the fields the KubeRay CRDs require. Beyond syntax, every
file must keep the properties a multi-node search depends on: GPU workers, this project installed,
token authentication, and results on storage that every node shares. Offline and fast.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
RESULTS = "/mnt/results"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def commands(config: dict, *keys: str) -> list[str]:
    return [cmd for key in keys for cmd in config.get(key) or []]


# --------------------------------------------------------------------------- ray up


@pytest.fixture(scope="module")
def ray_up() -> dict:
    return load("ray-cluster.yaml")


def test_ray_up_matches_rays_schema(ray_up):
    """The file as written, before any defaults, is valid under ray/autoscaler/ray-schema.json."""
    import jsonschema
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(ray_up, json.loads(schema_path.read_text()))


def test_ray_up_passes_rays_validator(ray_up):
    """What `ray up` does first: merge the provider's defaults, then validate (schema + checks such
    as head_node_type in available_node_types and sum(min_workers) <= max_workers)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(ray_up))


def test_ray_up_node_types(ray_up):
    types = ray_up["available_node_types"]
    head = ray_up["head_node_type"]
    assert head in types
    assert types[head]["resources"].get("GPU", 0) == 0, "the head only drives the search"

    workers = {name: t for name, t in types.items() if name != head}
    assert workers, "no worker node types"
    gpus = sorted(t["resources"].get("GPU", 0) for t in workers.values())
    assert all(g >= 1 for g in gpus), f"every worker type must bring GPUs: {gpus}"
    assert max(gpus) >= 2, "a multi-GPU type is needed for --workers-per-trial"
    for name, t in workers.items():
        assert 0 <= t.get("min_workers", 0) <= t["max_workers"] <= ray_up["max_workers"], name


def test_ray_up_installs_this_project(ray_up):
    """setup_commands (run on every node) pip-install the checkout synced by file_mounts, with torch
    and Ray pinned to the versions of the image."""
    name = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    mounted = [remote for remote, local in ray_up["file_mounts"].items() if local == "."]
    assert mounted, "the checkout is not synced to the nodes"
    installs = [c for c in ray_up["setup_commands"] if "pip install" in c]
    assert any(mounted[0] in c for c in installs), f"no setup command installs {mounted[0]}"
    assert name == "deeplense-tuner"
    # Per-type worker_setup_commands would replace the global ones and skip the install.
    for t in ray_up["available_node_types"].values():
        assert "worker_setup_commands" not in t

    image_ray = re.search(r"ray:(\d+\.\d+\.\d+)", ray_up["docker"]["image"]).group(1)
    torch_pins = {re.search(r'"torch==([^"]+)"', c).group(1) for c in installs if '"torch==' in c}
    assert len(torch_pins) == 1, f"torch must be pinned once, consistently: {torch_pins}"
    assert any(f"=={image_ray}" in c for c in installs), "the install must keep the image's Ray"


def test_ray_up_cluster_ray_matches_local_ray(ray_up):
    """Ray refuses drivers whose Ray differs from the cluster's: the image must carry ours."""
    import ray

    image_ray = re.search(r"ray:(\d+\.\d+)", ray_up["docker"]["image"]).group(1)
    assert image_ray == ".".join(ray.__version__.split(".")[:2])


def test_ray_up_results_are_shared(ray_up):
    """The results path is an NFS/EFS mount made on every host (initialization_commands run on
    head and workers alike), bound into every container at the same path, and checked before
    Ray starts; or the search writes to object storage."""
    everywhere = " ".join(commands(ray_up, "initialization_commands"))
    if "s3://" in everywhere + " ".join(commands(ray_up, "setup_commands")):
        return
    assert re.search(rf"mount -t nfs4? .*:/\S* {RESULTS}\b", everywhere), "no NFS mount"
    assert f"--volume={RESULTS}:{RESULTS}" in ray_up["docker"]["run_options"]
    assert any(f"mountpoint -q {RESULTS}" in c for c in ray_up["setup_commands"])
    for t in ray_up["available_node_types"].values():
        assert "initialization_commands" not in t, "a node type would skip the mount"
        assert "docker" not in t, "a node type would drop the volume"


def test_ray_up_token_auth(ray_up):
    """Head, workers and shells all run with RAY_AUTH_MODE=token and the same token file."""
    assert ray_up["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    for key, flag in (("head_start_ray_commands", "--head"), ("worker_start_ray_commands", "--address=")):
        start = [c for c in ray_up[key] if "ray start" in c]
        assert len(start) == 1, key
        assert "RAY_AUTH_MODE=token" in start[0] and flag in start[0], key
    assert any("RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in ray_up["setup_commands"])


def test_readme_search_uses_the_shared_path():
    """Every documented search writes to the shared path and reaches the cluster."""
    text = (CLUSTER / "README.md").read_text()
    searches = re.findall(r"python -m tuner search[^`]*?(?=\n\S|\n\n|```)", text, re.S)
    assert searches
    for s in searches:
        args = shlex.split(s.replace("\\\n", " "))
        assert args[args.index("--storage") + 1] == RESULTS, s
        assert "--address" in args, s
    for name in ("ray-cluster.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob.yaml",
                 "kuberay-results-pvc.yaml"):
        assert f"cluster/{name}" in text, name


# --------------------------------------------------------------------------- KubeRay


@pytest.fixture(scope="module")
def pvc() -> dict:
    return load("kuberay-results-pvc.yaml")


def check_pod_template(template: dict, where: str, shared_claim: str) -> dict:
    """A Ray pod template: an image, and the shared claim mounted at the results path."""
    spec = template["spec"]
    containers = spec["containers"]
    assert containers and isinstance(containers[0].get("image"), str) and containers[0]["image"], where
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in containers[0].get("volumeMounts", [])}
    claimed = [n for n, v in volumes.items()
               if v.get("persistentVolumeClaim", {}).get("claimName") == shared_claim]
    assert claimed, f"{where}: the results claim is not a volume"
    assert mounts.get(claimed[0]) == RESULTS, f"{where}: results not mounted at {RESULTS}"
    return containers[0]


def check_ray_cluster_spec(spec: dict, where: str, shared_claim: str) -> None:
    """The fields KubeRay's RayCluster CRD requires, plus GPU workers and shared results."""
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict), where
    check_pod_template(head["template"], f"{where} head", shared_claim)

    groups = spec["workerGroupSpecs"]
    assert groups, f"{where}: no worker groups"
    names = [g["groupName"] for g in groups]
    assert len(set(names)) == len(names), f"{where}: duplicate groupName"
    gpus = []
    for g in groups:
        w = f"{where} {g['groupName']}"
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], w
        assert isinstance(g["rayStartParams"], dict), w
        container = check_pod_template(g["template"], w, shared_claim)
        limits = container["resources"]["limits"]
        assert int(limits.get("nvidia.com/gpu", 0)) >= 1, f"{w}: no GPU limit"
        gpus.append(int(limits["nvidia.com/gpu"]))
    assert max(gpus) >= 2, f"{where}: a multi-GPU group is needed for --workers-per-trial"
    assert spec.get("authOptions", {}).get("mode") == "token", f"{where}: token auth is off"
    assert spec["rayVersion"] in head["template"]["spec"]["containers"][0]["image"], where


def test_results_claim_is_read_write_many(pvc):
    assert pvc["apiVersion"] == "v1" and pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"]


def test_raycluster(pvc):
    rc = load("kuberay-raycluster.yaml")
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    assert rc["metadata"]["name"]
    check_ray_cluster_spec(rc["spec"], "RayCluster", pvc["metadata"]["name"])


def test_rayjob(pvc):
    job = load("kuberay-rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["metadata"]["name"]
    spec = job["spec"]
    args = shlex.split(spec["entrypoint"])
    assert args[:4] == ["python", "-m", "tuner", "search"]
    assert args[args.index("--storage") + 1] == RESULTS
    assert "--space" in args
    assert spec["shutdownAfterJobFinishes"] is True
    check_ray_cluster_spec(spec["rayClusterSpec"], "RayJob", pvc["metadata"]["name"])


def test_rayjob_cluster_is_the_raycluster():
    """One cluster layout, two ways to run it: the two specs must not drift apart."""
    assert load("kuberay-rayjob.yaml")["spec"]["rayClusterSpec"] == load("kuberay-raycluster.yaml")["spec"]


def test_dockerfile_matches_manifests():
    """The image the manifests name is the one cluster/Dockerfile builds: same Ray, project installed."""
    docker = (CLUSTER / "Dockerfile").read_text()
    base_ray = re.search(r"^FROM rayproject/ray:(\d+\.\d+\.\d+)", docker, re.M).group(1)
    assert load("kuberay-raycluster.yaml")["spec"]["rayVersion"] == base_ray
    assert re.search(r"pip install .*/home/ray/deeplense-tuner", docker)
