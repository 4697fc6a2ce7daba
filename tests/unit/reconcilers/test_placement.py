"""Putting a pod on its node: one create with nodeName set; what the API server answers decides
whether the reconcile reports a refusal, takes the pod as placed, or fails to be retried."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.kube.cache import ClusterCache
from ringrift_operator.kube.client import ApiError, KubeClient
from ringrift_operator.reconcilers.deps import Deps, workload_settings
from ringrift_operator.reconcilers.placement import PodRefusedError, create_on_node


class Client:
    def __init__(self, *, create_error: ApiError | None = None, existing_node: str = "") -> None:
        self.create_error = create_error
        self.existing_node = existing_node
        self.created: list[dict[str, Any]] = []
        self.bound: list[str] = []

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.create_error is not None:
            raise self.create_error
        self.created.append(body)
        return body

    async def get(self, path: str) -> dict[str, Any]:
        return {
            "metadata": {"name": "p", "namespace": "ns", "uid": "pod-uid"},
            "spec": {"nodeName": self.existing_node},
            "status": {"phase": "Pending"},
        }

    async def bind_pod(self, *, namespace: str, pod: str, node: str) -> None:
        self.bound.append(node)


def deps_with(client: Client) -> Deps:
    settings = OperatorSettings()
    return Deps(client=cast(KubeClient, client), cache=ClusterCache(), settings=settings,
                workload=workload_settings(settings),
                clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip


def manifest() -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}}


async def test_the_pod_is_created_on_its_node_in_one_write() -> None:
    client = Client()
    await create_on_node(deps_with(client), "ns", manifest(), "n1")
    assert [c["spec"]["nodeName"] for c in client.created] == ["n1"]
    assert client.bound == []


@pytest.mark.parametrize(
    "error",
    [
        ApiError(422, "Invalid", "spec.tolerations[0].key: Invalid value"),
        ApiError(403, "Forbidden", "violates PodSecurity restricted"),
        ApiError(403, "Forbidden", "namespace ns is being terminated"),
        ApiError(404, "NotFound", 'namespaces "ns" not found'),
    ],
    ids=["invalid", "pod-security", "terminating", "namespace-gone"],
)
async def test_a_refused_pod_is_reported_not_retried_at_once(error: ApiError) -> None:
    with pytest.raises(PodRefusedError):
        await create_on_node(deps_with(Client(create_error=error)), "ns", manifest(), "n1")


async def test_an_existing_unbound_pod_is_bound_and_a_bound_one_taken_as_placed() -> None:
    exists = ApiError(409, "AlreadyExists", "pods p already exists")
    unbound = Client(create_error=exists)
    await create_on_node(deps_with(unbound), "ns", manifest(), "n1")
    assert unbound.bound == ["n1"]
    bound = Client(create_error=exists, existing_node="n2")
    await create_on_node(deps_with(bound), "ns", manifest(), "n1")
    assert bound.bound == []


async def test_a_server_error_is_raised_for_the_work_queue_to_retry() -> None:
    with pytest.raises(ApiError) as raised:
        await create_on_node(
            deps_with(Client(create_error=ApiError(500, "InternalError", "etcd"))), "ns",
            manifest(), "n1",
        )  # fmt: skip
    assert not isinstance(raised.value, PodRefusedError)
