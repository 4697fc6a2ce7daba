"""Plain snapshots of pods, as the JobManager's pure logic sees them.

Built from Pod objects by ``kube.snapshots``; built directly in tests. Read by ``managers.jobs``
(jobs per node, stale-job detection). No Kubernetes client types cross this boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ringrift_operator.api.common import (
    LABEL_JOB_KIND,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    OPERATOR_NAME,
)

__all__ = ["PodInfo", "PodPhase"]


class PodPhase(StrEnum):
    """``status.phase`` of a Pod."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


_TERMINAL_PHASES = frozenset({PodPhase.SUCCEEDED, PodPhase.FAILED})


@dataclass(frozen=True, slots=True)
class PodInfo:
    """One pod at one moment. Times are seconds since the epoch; None = not happened yet."""

    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    node_name: str = ""  # spec.nodeName: "" until the pod is bound
    phase: PodPhase = PodPhase.PENDING
    owner_uid: str = ""  # uid of the controller ownerReference ("" = none)
    created_at: float = 0.0
    bound_at: float | None = None  # PodScheduled condition turned True
    started_at: float | None = None  # the workload container started
    last_progress_at: float | None = None  # last heartbeat / progress report of the workload
    deleting: bool = False  # metadata.deletionTimestamp is set

    @property
    def is_terminal(self) -> bool:
        return self.phase in _TERMINAL_PHASES

    @property
    def is_bound(self) -> bool:
        return bool(self.node_name)

    @property
    def is_operator_pod(self) -> bool:
        """Created by this operator (managed-by label): its jobs count and it may be reaped."""
        return self.labels.get(LABEL_MANAGED_BY) == OPERATOR_NAME

    @property
    def job_kind(self) -> str:
        return self.labels.get(LABEL_JOB_KIND, "")

    @property
    def owner(self) -> tuple[str, str]:
        """(kind, name) of the owning resource, from the operator's labels."""
        return self.labels.get(LABEL_OWNER_KIND, ""), self.labels.get(LABEL_OWNER_NAME, "")
