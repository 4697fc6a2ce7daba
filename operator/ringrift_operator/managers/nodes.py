"""Plain snapshots of cluster nodes, as every manager sees them.

Built from Node objects (and the pods on them) by ``kube.snapshots``; built directly in tests.
No Kubernetes client types cross this boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

GPU_RESOURCE = "nvidia.com/gpu"
GIB = 1024**3

# GPU Feature Discovery labels.
LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"
LABEL_GPU_MEMORY = "nvidia.com/gpu.memory"  # MiB per GPU
LABEL_GPU_COUNT = "nvidia.com/gpu.count"
LABEL_GPU_REPLICAS = "nvidia.com/gpu.replicas"
LABEL_GPU_FAMILY = "nvidia.com/gpu.family"
LABEL_GPU_COMPUTE_MAJOR = "nvidia.com/gpu.compute.major"
LABEL_GPU_COMPUTE_MINOR = "nvidia.com/gpu.compute.minor"
LABEL_GPU_PRESENT = "nvidia.com/gpu.present"
LABEL_ARCH = "kubernetes.io/arch"
LABEL_HOSTNAME = "kubernetes.io/hostname"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    effect: TaintEffect
    value: str = ""


@dataclass(frozen=True, slots=True)
class Toleration:
    """A pod toleration; ``key=None`` with operator Exists tolerates everything."""

    key: str | None = None
    operator: str = "Equal"  # "Equal" or "Exists"
    value: str = ""
    effect: TaintEffect | None = None  # None tolerates every effect


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node at one moment: what it has, what is in use, and how it has behaved."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    gpu_allocatable: int = 0  # allocatable nvidia.com/gpu
    gpu_in_use: int = 0  # requested by non-terminal pods bound to the node
    cpu_millis: int = 0  # allocatable CPU
    cpu_in_use_millis: int = 0
    memory_bytes: int = 0  # allocatable memory
    memory_in_use_bytes: int = 0
    ready: bool = True
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()
    running_jobs: int = 0  # operator workload pods running or bound here
    recent_failures: int = 0  # reputation: failed attempts on this node in the reputation window

    @property
    def gpu_free(self) -> int:
        return max(0, self.gpu_allocatable - self.gpu_in_use)

    @property
    def arch(self) -> str:
        return self.labels.get(LABEL_ARCH, "amd64")

    @property
    def gpu_product(self) -> str:
        return self.labels.get(LABEL_GPU_PRODUCT, "")

    @property
    def has_gpu(self) -> bool:
        return self.gpu_allocatable > 0
