"""Simulated nodes: a short spec such as ``h100:2,a100:4,cpu:2`` turned into KWOK Node objects
that carry what a real node carries — GPU Feature Discovery labels, ``nvidia.com/gpu`` capacity and
allocatable, CPU, memory, architecture (GH200 is arm64) and the annotation KWOK manages by.

Spec grammar: comma-separated ``class[/gpus]:count`` items, e.g. ``a100/4:2`` for two A100 nodes
with 4 GPUs each. Used by the launcher, the tests and the benchmarks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_MANAGED = "fake"  # KWOK heartbeats nodes carrying this value
KWOK_RELEASED = "released"  # any value but KWOK_MANAGED: KWOK stops acting for the node
LOST_ANNOTATION = "sandbox.ringrift.ai/lost"  # a "lost" node: Ready=False, no heartbeat stage
SANDBOX_LABEL = "sandbox.ringrift.ai/node-class"


@dataclass(frozen=True, slots=True)
class NodeClass:
    """The hardware of one kind of simulated node."""

    name: str
    product: str  # nvidia.com/gpu.product ("" for CPU nodes)
    gpus: int
    gpu_memory_mib: int
    compute: str  # "major.minor"
    family: str
    arch: str
    cpus: int
    memory_gib: int


NODE_CLASSES: dict[str, NodeClass] = {
    c.name: c
    for c in (
        NodeClass("h100", "NVIDIA-H100-80GB-HBM3", 8, 81559, "9.0", "hopper", "amd64", 96, 1024),
        NodeClass("gh200", "NVIDIA-GH200-480GB", 1, 97871, "9.0", "hopper", "arm64", 72, 480),
        NodeClass("a100", "NVIDIA-A100-SXM4-80GB", 8, 81920, "8.0", "ampere", "amd64", 64, 512),
        NodeClass("a100-40", "NVIDIA-A100-SXM4-40GB", 4, 40960, "8.0", "ampere", "amd64", 32, 256),
        NodeClass("l40s", "NVIDIA-L40S", 4, 46068, "8.9", "ada-lovelace", "amd64", 48, 256),
        NodeClass(
            "rtx4090", "NVIDIA-GeForce-RTX-4090", 2, 24564, "8.9", "ada-lovelace", "amd64", 16, 64
        ),
        NodeClass("rtx3090", "NVIDIA-GeForce-RTX-3090", 2, 24576, "8.6", "ampere", "amd64", 16, 64),
        NodeClass("rtx3060", "NVIDIA-GeForce-RTX-3060", 1, 12288, "8.6", "ampere", "amd64", 8, 32),
        NodeClass("l4", "NVIDIA-L4", 1, 23034, "8.9", "ada-lovelace", "amd64", 8, 32),
        NodeClass("t4", "Tesla-T4", 1, 15360, "7.5", "turing", "amd64", 8, 32),
        NodeClass("cpu", "", 0, 0, "", "", "amd64", 32, 128),
        NodeClass("small", "", 0, 0, "", "", "amd64", 4, 4),  # below the 8 GiB training floor
    )
}

_ITEM = re.compile(r"^(?P<cls>[a-z0-9-]+)(?:/(?P<gpus>\d+))?:(?P<count>\d+)$")


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One simulated node to create."""

    name: str
    node_class: NodeClass
    gpus: int


def parse_node_spec(spec: str) -> list[NodeSpec]:
    """Parse ``h100:2,a100/4:1,cpu:2`` into node specs with deterministic names
    (``gpu-h100-0``, ``gpu-a100-0``, ``cpu-0``); raises ValueError naming the bad item."""
    nodes: list[NodeSpec] = []
    seen: dict[str, int] = {}
    for raw in (item.strip() for item in spec.split(",")):
        if not raw:
            continue
        m = _ITEM.match(raw)
        if not m:
            raise ValueError(f"bad node spec item {raw!r}: expected class[/gpus]:count")
        cls_name = m["cls"]
        if cls_name not in NODE_CLASSES:
            known = ", ".join(sorted(NODE_CLASSES))
            raise ValueError(f"unknown node class {cls_name!r} in {raw!r} (known: {known})")
        node_class = NODE_CLASSES[cls_name]
        gpus = int(m["gpus"]) if m["gpus"] is not None else node_class.gpus
        if node_class.gpus == 0 and gpus:
            raise ValueError(f"{cls_name!r} nodes have no GPUs: {raw!r}")
        prefix = f"gpu-{cls_name}" if node_class.gpus else cls_name
        for _ in range(int(m["count"])):
            index = seen.get(prefix, 0)
            seen[prefix] = index + 1
            nodes.append(NodeSpec(name=f"{prefix}-{index}", node_class=node_class, gpus=gpus))
    if not nodes:
        raise ValueError("the node spec names no nodes")
    return nodes


def build_node(spec: NodeSpec) -> dict[str, Any]:
    """The Node object for one simulated node, as GFD and the kubelet would leave it."""
    c = spec.node_class
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": c.arch,
        "beta.kubernetes.io/arch": c.arch,
        "type": "kwok",
        SANDBOX_LABEL: c.name,
    }
    capacity = {
        "cpu": str(c.cpus),
        "memory": f"{c.memory_gib}Gi",
        "pods": "110",
        "ephemeral-storage": "500Gi",
    }
    if spec.gpus:
        major, minor = c.compute.split(".")
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": c.product,
            "nvidia.com/gpu.memory": str(c.gpu_memory_mib),
            "nvidia.com/gpu.count": str(spec.gpus),
            "nvidia.com/gpu.replicas": "1",
            "nvidia.com/gpu.family": c.family,
            "nvidia.com/gpu.compute.major": major,
            "nvidia.com/gpu.compute.minor": minor,
            "nvidia.com/cuda.driver-version.full": "550.107.02",
            "nvidia.com/cuda.driver.major": "550",
        }
        capacity["nvidia.com/gpu"] = str(spec.gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION: KWOK_MANAGED, "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": []},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "nodeInfo": {
                "architecture": c.arch,
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }
