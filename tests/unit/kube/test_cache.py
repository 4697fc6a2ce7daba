"""ClusterCache.node_infos: rebuilt incrementally (only the nodes whose usage changed), it must
always equal a rebuild of every node from the pods, reservations and failures it holds."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from ringrift_operator.kube.cache import ZERO, ClusterCache
from ringrift_operator.kube.snapshots import node_info
from ringrift_operator.managers.nodes import NodeInfo

NODES = [f"n{i}" for i in range(6)]


def node(name: str, gpus: int = 4) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/arch": "amd64"}},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "16", "memory": "64Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(name: str, node: str, *, phase: str = "Running", gpus: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": str(gpus),
                                                                      "cpu": "1"}}}],
        },
        "status": {"phase": phase},
    }  # fmt: skip


def rebuilt(cache: ClusterCache) -> dict[str, NodeInfo]:
    """Every node from scratch, as node_infos was before it became incremental."""
    out = {}
    for name, obj in cache.nodes.items():
        base = node_info(obj)
        used = cache._used.get(name, ZERO) + cache._reserved.get(name, ZERO)
        failures = cache.recent_failures(name)
        if used != ZERO or failures:
            base = replace(base, gpu_in_use=used.gpus, cpu_in_use_millis=used.cpu_millis,
                           memory_in_use_bytes=used.memory_bytes, running_jobs=used.jobs,
                           recent_failures=failures)  # fmt: skip
        out[name] = base
    return out


@pytest.mark.parametrize("seed", range(20))
def test_incremental_node_infos_equal_a_full_rebuild(seed: int) -> None:
    rnd = random.Random(seed)
    cache = ClusterCache()
    for name in NODES[:4]:
        cache.upsert_node(node(name))
    pods = [f"p{i}" for i in range(12)]
    for _ in range(300):
        op = rnd.randrange(8)
        name, where = rnd.choice(pods), rnd.choice(NODES)
        if op == 0:
            cache.upsert_pod(pod(name, where))
        elif op == 1:
            cache.upsert_pod(pod(name, where, phase=rnd.choice(["Succeeded", "Failed"])))
        elif op == 2:
            cache.delete_pod(("ns", name))
        elif op == 3:
            cache.reserve(("ns", name), node=where, gpus=1, cpu_millis=500, memory_bytes=0,
                          now=0.0)  # fmt: skip
        elif op == 4:
            cache.release(("ns", name))
        elif op == 5:
            cache.upsert_node(node(where, gpus=rnd.choice([2, 4, 8])))
        elif op == 6:
            cache.delete_node(where)
        else:
            cache.record_failure(where)
        if rnd.random() < 0.3:
            infos = cache.node_infos()
            assert {i.name: i for i in infos} == rebuilt(cache)
            assert len(infos) == len(cache.nodes)
    skip = set(NODES[:2])
    assert {i.name for i in cache.node_infos(exclude=skip)} == set(cache.nodes) - skip
