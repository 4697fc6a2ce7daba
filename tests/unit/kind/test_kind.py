"""The kind path without Docker: the cluster config, the GPU capacity patcher, the chart values
it installs with, the Docker check and the Makefile wiring; and the e2e suite's switch to an
existing cluster (tests/support/cluster_support.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster_support import (
    EXISTING_KUBECONFIG_ENV,
    ExistingCluster,
    InstalledOperator,
    existing_kubeconfig,
)
from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.managers.gpus import score_gpu
from ringrift_operator.managers.jobs import WorkloadScript

REPO = Path(__file__).resolve().parents[3]
KIND = REPO / "hack" / "kind"
GFD = yaml.safe_load((REPO / "tests" / "testdata" / "gpu-nodes.yaml").read_text())
PRODUCTS = {p["product"]: p for p in GFD["products"]}
GFD_LABELS = {
    "nvidia.com/gpu.present", "nvidia.com/gpu.product", "nvidia.com/gpu.memory",
    "nvidia.com/gpu.count", "nvidia.com/gpu.replicas", "nvidia.com/gpu.family",
    "nvidia.com/gpu.compute.major", "nvidia.com/gpu.compute.minor",
    "nvidia.com/cuda.driver-version.full",
}  # fmt: skip


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, KIND / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_capacity = _load("gpu_capacity")
CONFIG = yaml.safe_load((KIND / "kind-config.yaml").read_text())
WORKERS = [n for n in CONFIG["nodes"] if n["role"] == "worker"]
GPU_WORKERS = [n for n in WORKERS if "nvidia.com/gpu.product" in n.get("labels", {})]


# --- the cluster config -------------------------------------------------------------------------


def test_the_config_is_a_kind_cluster_with_one_control_plane() -> None:
    assert (CONFIG["kind"], CONFIG["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert [n["role"] for n in CONFIG["nodes"]].count("control-plane") == 1
    assert len(GPU_WORKERS) >= 3
    for node in CONFIG["nodes"]:
        assert set(node) <= {"role", "labels"}
        for key, value in node.get("labels", {}).items():
            assert isinstance(value, str), f"{key}: label values must be strings"
            # Kubelets may not set labels in the kubernetes.io namespaces (NodeRestriction).
            assert "kubernetes.io/" not in key


@pytest.mark.parametrize(
    "worker", GPU_WORKERS, ids=[w["labels"]["nvidia.com/gpu.product"] for w in GPU_WORKERS]
)
def test_gpu_workers_carry_the_labels_gfd_sets(worker: dict[str, Any]) -> None:
    labels = worker["labels"]
    assert set(labels) >= GFD_LABELS
    known = PRODUCTS[labels["nvidia.com/gpu.product"]]
    major, minor = known["compute"].split(".")
    assert labels["nvidia.com/gpu.memory"] == str(known["memoryMiB"])
    assert (labels["nvidia.com/gpu.compute.major"], labels["nvidia.com/gpu.compute.minor"]) == (
        major, minor)  # fmt: skip
    assert labels["nvidia.com/gpu.family"] == known["family"]
    assert known["arch"] == "amd64"  # kind nodes have the machine's architecture
    assert labels["nvidia.com/gpu.present"] == "true"
    assert int(labels["nvidia.com/gpu.count"]) >= 1
    # The operator scores these labels into the tier the test data gives.
    assert score_gpu(labels).tier == known["tier"]


def test_the_workers_span_several_power_tiers_and_a_cpu_worker_runs_work() -> None:
    tiers = [score_gpu(w["labels"]).tier for w in GPU_WORKERS]
    assert len(set(tiers)) == len(tiers) >= 3
    cpu = [w for w in WORKERS if w not in GPU_WORKERS]
    assert cpu
    assert all(w["labels"].get("ringrift.ai/worker") == "true" for w in cpu)


# --- the GPU capacity patch ---------------------------------------------------------------------


def node(name: str, labels: dict[str, str], capacity: str | None = None,
         allocatable: str | None = None) -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"capacity": {"cpu": "8"}, "allocatable": {"cpu": "8"}}
    if capacity is not None:
        status["capacity"]["nvidia.com/gpu"] = capacity
    if allocatable is not None:
        status["allocatable"]["nvidia.com/gpu"] = allocatable
    return {"metadata": {"name": name, "labels": labels}, "status": status}


def kind_nodes(**gpu: tuple[str | None, str | None]) -> list[dict[str, Any]]:
    names = ["ringrift-control-plane"] + [
        "ringrift-worker" + (str(i + 1) if i else "") for i in range(len(WORKERS))
    ]
    nodes = [node(names[0], {})]
    for name, worker in zip(names[1:], WORKERS, strict=True):
        capacity, allocatable = gpu.get(name.replace("-", "_"), (None, None))
        nodes.append(node(name, dict(worker.get("labels", {})), capacity, allocatable))
    return nodes


def test_every_gpu_worker_is_patched_through_the_status_subresource() -> None:
    nodes = kind_nodes()
    patches = gpu_capacity.plan_patches(nodes)
    counts = {n["metadata"]["name"]: n["metadata"]["labels"].get("nvidia.com/gpu.count")
              for n in nodes}  # fmt: skip
    assert set(patches) == {name for name, count in counts.items() if count}
    for name, patch in patches.items():
        assert patch == {"status": {"capacity": {"nvidia.com/gpu": counts[name]}}}
    assert not gpu_capacity.is_settled(nodes)


def test_patched_nodes_are_left_alone_and_settle_when_allocatable() -> None:
    h100 = GPU_WORKERS[0]["labels"]["nvidia.com/gpu.count"]
    nodes = [node("a", {"nvidia.com/gpu.count": h100}, capacity=h100)]
    assert gpu_capacity.plan_patches(nodes) == {}
    assert not gpu_capacity.is_settled(nodes)  # the kubelet has not copied it yet
    nodes = [node("a", {"nvidia.com/gpu.count": h100}, capacity=h100, allocatable=h100)]
    assert gpu_capacity.is_settled(nodes)


def test_a_count_label_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a count"):
        gpu_capacity.wanted_capacity([node("a", {"nvidia.com/gpu.count": "eight"})])


# --- chart values and the Makefile ---------------------------------------------------------------

VALUES = yaml.safe_load((KIND / "values.yaml").read_text())
MAKEFILE = (REPO / "Makefile").read_text()


def test_the_values_run_the_sample_workload_from_the_loaded_image() -> None:
    image = f"{VALUES['image']['repository']}:{VALUES['image']['tag']}"
    assert re.search(rf"^KIND_IMAGE := {re.escape(image)}(#|$)", MAKEFILE, re.M)
    assert VALUES["image"]["pullPolicy"] == "Never"  # kind load, never a registry
    settings = OperatorSettings.model_validate(VALUES["settings"])
    assert settings.workload.image == image
    assert settings.workload.image_pull_policy == "Never"
    assert set(settings.workload.commands) == {s.value for s in WorkloadScript}
    commands = settings.workload.commands.values()
    assert all(cmd == ["ringrift-operator", "workload"] for cmd in commands)


def test_the_values_render_with_the_chart() -> None:
    chart_tests = REPO / "hack" / "render_install.py"
    spec = importlib.util.spec_from_file_location("render_install_kind", chart_tests)
    assert spec is not None
    assert spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    try:
        helm = render.find_helm()
    except render.HelmNotFound as e:
        pytest.fail(f"{e}: rendering the chart needs helm", pytrace=False)
    text = render.helm_template("-f", str(KIND / "values.yaml"), helm=helm, release="ringrift",
                                namespace="ringrift-system")  # fmt: skip
    docs = [d for d in yaml.safe_load_all(text) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1
    (operator,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "operator"]  # fmt: skip
    assert (operator["image"], operator["imagePullPolicy"]) == ("ringrift-operator:kind", "Never")
    configmap = next(d for d in docs if d["kind"] == "ConfigMap" and "settings.yaml" in d["data"])
    rendered = yaml.safe_load(configmap["data"]["settings.yaml"])
    assert rendered["workload"]["image"] == "ringrift-operator:kind"
    OperatorSettings.model_validate(rendered)


def make_dry_run(target: str) -> str:
    result = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kind_e2e_builds_loads_installs_and_runs_the_suite_on_kind() -> None:
    steps = make_dry_run("kind-e2e")
    order = ["hack/kind/require-docker.sh", "create cluster", "gpu_capacity.py", "docker build",
             "load docker-image", "helm upgrade --install", "RINGRIFT_E2E_KUBECONFIG="]  # fmt: skip
    positions = [steps.find(step) for step in order]
    assert -1 not in positions, dict(zip(order, positions, strict=True))
    assert positions == sorted(positions)
    assert "-f hack/kind/values.yaml" in steps
    assert "go install sigs.k8s.io/kind@v" in steps or "/kind-v" in steps
    assert "pytest -m e2e" in steps


def test_kind_down_deletes_the_cluster() -> None:
    steps = make_dry_run("kind-down")
    assert steps.index("require-docker.sh") < steps.index("delete cluster --name ringrift")


# --- the Docker check ----------------------------------------------------------------------------


def run_check(tmp_path: Path, docker: str | None) -> subprocess.CompletedProcess[str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    if docker is not None:
        fake = bindir / "docker"
        fake.write_text(f"#!/bin/sh\n{docker}\n")
        fake.chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    return subprocess.run(["bash", str(KIND / "require-docker.sh")], env=env,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("docker", "message"),
    [
        pytest.param(None, "no docker command is on PATH", id="no-docker"),
        pytest.param("exit 1", "the Docker engine does not answer", id="engine-down"),
    ],
)
def test_without_docker_the_kind_targets_fail_saying_so(tmp_path: Path, docker: str | None,
                                                        message: str) -> None:  # fmt: skip
    if docker is None and any(Path(d, "docker").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("a docker command is installed in /usr/bin or /bin")
    result = run_check(tmp_path, docker)
    assert result.returncode == 1
    assert "the kind targets need Docker" in result.stderr
    assert message in result.stderr
    assert "make sandbox-up" in result.stderr


def test_with_a_docker_engine_the_check_passes(tmp_path: Path) -> None:
    assert run_check(tmp_path, "exit 0").returncode == 0


# --- the e2e suite's switch ----------------------------------------------------------------------


def test_without_the_variable_the_suite_uses_the_sandbox(tmp_path: Path) -> None:
    assert existing_kubeconfig({}) is None
    assert existing_kubeconfig({EXISTING_KUBECONFIG_ENV: " "}) is None
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\n")
    assert existing_kubeconfig({EXISTING_KUBECONFIG_ENV: str(config)}) == config
    with pytest.raises(FileNotFoundError, match="no such kubeconfig"):
        existing_kubeconfig({EXISTING_KUBECONFIG_ENV: str(tmp_path / "absent")})


def test_sandbox_only_features_skip_naming_what_they_needed(tmp_path: Path) -> None:
    cluster = ExistingCluster(tmp_path / "kubeconfig", tmp_path)
    assert cluster.kubeconfig == tmp_path / "kubeconfig"
    for feature in ("simulator", "set_node_lost", "directory", "node_data_dir"):
        with pytest.raises(pytest.skip.Exception, match=rf"needs the sandbox's {feature}"):
            getattr(cluster, feature)
    operator = InstalledOperator(core=None, namespace="ns")
    with pytest.raises(pytest.skip.Exception, match=r"local operator process \(stop\)"):
        operator.stop()
    with pytest.raises(AttributeError):
        operator.__wrapped__  # noqa: B018 (dunder lookups stay AttributeErrors: copy, pickle)


FAKE_KUBECTL = """#!{python}
import json, sys
state = "{state}"
args = [a for a in sys.argv[1:] if not a.startswith("--kubeconfig")]
nodes = json.load(open(state))
if args[:2] == ["get", "nodes"]:
    print(json.dumps({{"items": nodes}}))
elif args[:2] == ["patch", "node"]:
    assert "--subresource=status" in args and "--type=merge" in args, args
    patch = json.loads(args[args.index("-p") + 1])
    for node in nodes:
        if node["metadata"]["name"] == args[2]:
            node["status"]["capacity"].update(patch["status"]["capacity"])
            node["status"]["allocatable"].update(patch["status"]["capacity"])  # the kubelet's copy
    json.dump(nodes, open(state, "w"))
    with open(state + ".log", "a") as log:
        log.write(args[2] + "\\n")
else:
    sys.exit("unexpected kubectl " + " ".join(args))
"""


def test_the_patcher_gives_every_gpu_worker_its_capacity_once(tmp_path: Path) -> None:
    state = tmp_path / "nodes.json"
    state.write_text(json.dumps(kind_nodes()))
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable, state=state))
    kubectl.chmod(0o755)
    args = ["--kubectl", str(kubectl), "--kubeconfig", "k", "--timeout", "5"]
    assert gpu_capacity.main(args) == 0
    nodes = json.loads(state.read_text())
    assert gpu_capacity.is_settled(nodes)
    patched = (tmp_path / "nodes.json.log").read_text().split()
    assert len(patched) == len(GPU_WORKERS)
    assert gpu_capacity.main(args) == 0  # idempotent: nothing left to patch
    assert (tmp_path / "nodes.json.log").read_text().split() == patched
