"""The sandbox is a real cluster: a real API server at the pinned version, real controllers and a
real scheduler, KWOK nodes carrying GPU capacity, and RBAC that denies."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from cluster_support import skip_module_on_existing_cluster
from ringrift_sandbox.cluster import KUBE_VERSION, wait_for
from ringrift_sandbox.nodes import parse_node_spec
from tests_support import poll

# The sandbox's own control plane, simulated nodes (by name) and binaries.
pytestmark = skip_module_on_existing_cluster("tests the sandbox itself")

GPU = "nvidia.com/gpu"


def _pod(name: str, *, gpus: int = 0, scheduler: str | None = None, **meta: Any) -> client.V1Pod:
    resources = client.V1ResourceRequirements(
        requests={"cpu": "100m", **({GPU: str(gpus)} if gpus else {})},
        limits={GPU: str(gpus)} if gpus else None,
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, **meta),
        spec=client.V1PodSpec(
            scheduler_name=scheduler,
            containers=[client.V1Container(name="main", image="busybox", resources=resources)],
            tolerations=[client.V1Toleration(operator="Exists")],
        ),
    )


def _bind(core: Any, namespace: str, pod: str, node: str) -> None:
    body = client.V1Binding(
        metadata=client.V1ObjectMeta(name=pod),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
    )
    # The generated client cannot parse the Status a binding returns; the call still binds.
    core.create_namespaced_binding(namespace, body, _preload_content=False)


def test_server_reports_the_pinned_version(api_client: Any) -> None:
    version = client.VersionApi(api_client).get_code()
    assert version.git_version == KUBE_VERSION
    assert (version.major, version.minor) == ("1", KUBE_VERSION.split(".")[1])


def test_nodes_are_ready_with_their_gpu_capacity(core: Any, sandbox: Any) -> None:
    expected = {s.name: s for s in parse_node_spec(sandbox.nodes)}
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(expected) <= set(nodes)
    for name, spec in expected.items():
        node = nodes[name]
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", name
        assert node.status.allocatable.get(GPU, "0") == str(spec.gpus), name
        assert node.metadata.labels["kubernetes.io/arch"] == spec.node_class.arch
        if spec.gpus:
            assert node.metadata.labels["nvidia.com/gpu.product"] == spec.node_class.product
            assert node.metadata.labels["nvidia.com/gpu.count"] == str(spec.gpus)
    assert nodes["gpu-gh200-0"].metadata.labels["kubernetes.io/arch"] == "arm64"


def test_a_pod_bound_to_a_simulated_node_becomes_running(core: Any, namespace: str) -> None:
    core.create_namespaced_pod(namespace, _pod("bound", gpus=1, scheduler="nobody"))
    _bind(core, namespace, "bound", "gpu-l40s-0")
    pod = poll(
        lambda: core.read_namespaced_pod("bound", namespace),
        until=lambda p: p.status.phase == "Running",
        timeout=30,
        what="pod Running",
    )
    assert pod.spec.node_name == "gpu-l40s-0"


def test_deleting_the_owner_garbage_collects_its_pods(core: Any, namespace: str) -> None:
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_pod(namespace, _pod("owned", scheduler="nobody", owner_references=[ref]))
    _bind(core, namespace, "owned", "cpu-0")
    poll(
        lambda: core.read_namespaced_pod("owned", namespace),
        until=lambda p: p.status.phase == "Running",
        timeout=30,
        what="owned pod Running",
    )
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("owned", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for("the owned pod to be garbage-collected", gone, timeout=60)


def test_kube_scheduler_places_a_gpu_pod_on_a_node_with_a_free_gpu(
    core: Any, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, _pod("gpu-pod", gpus=1))
    pod = poll(
        lambda: core.read_namespaced_pod("gpu-pod", namespace),
        until=lambda p: bool(p.spec.node_name),
        timeout=30,
        what="pod scheduled",
    )
    node = core.read_node(pod.spec.node_name)
    assert int(node.status.allocatable.get(GPU, "0")) >= 1


def test_a_pod_asking_for_more_gpus_than_any_node_has_stays_unschedulable(
    core: Any, namespace: str
) -> None:
    core.create_namespaced_pod(namespace, _pod("too-big", gpus=64))

    def unschedulable(p: Any) -> bool:
        conditions = {c.type: c for c in (p.status.conditions or [])}
        cond = conditions.get("PodScheduled")
        return cond is not None and cond.status == "False" and cond.reason == "Unschedulable"

    pod = poll(
        lambda: core.read_namespaced_pod("too-big", namespace),
        until=unschedulable,
        timeout=30,
        what="PodScheduled=False/Unschedulable",
    )
    assert pod.spec.node_name is None
    assert "nvidia.com/gpu" in pod.status.conditions[0].message


def test_rbac_denies_a_service_account_without_permissions(
    core: Any, namespace: str, sandbox: Any
) -> None:
    name = f"nobody-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    token = core.create_namespaced_service_account_token(
        name, namespace, client.AuthenticationV1TokenRequest(spec={"audiences": []})
    ).status.token
    cfg = client.Configuration()
    cfg.host = sandbox.server
    cfg.ssl_ca_cert = str(sandbox.pki.ca_cert)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as as_sa:
        who = client.AuthenticationV1Api(as_sa).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert who.status.user_info.username == f"system:serviceaccount:{namespace}:{name}"
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(as_sa).list_namespaced_pod(namespace)
    assert denied.value.status == 403
    assert "forbidden" in denied.value.body
