"""Kubernetes objects → the plain snapshots the managers read (NodeInfo, PodRecord).

Pure conversions: quantities, taints, readiness, what a pod requests and how its container
ended. Called by the cluster cache on every watch event, so they stay cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ringrift_operator.api.common import LABEL_MANAGED_BY, OPERATOR_NAME
from ringrift_operator.managers.nodes import (
    GPU_RESOURCE,
    NodeInfo,
    Taint,
    TaintEffect,
)
from ringrift_operator.managers.pods import PodInfo, PodPhase

JsonDict = dict[str, Any]

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "128Gi", "2", "1e3") as a number of base units."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = float(m[1]), m[2]
    if suffix in _BINARY:
        return number * float(_BINARY[suffix])
    if suffix in _DECIMAL:
        return number * float(_DECIMAL[suffix])
    if suffix[:1] in "eE":
        return number * 10.0 ** int(suffix[1:])
    raise ValueError(f"unknown quantity suffix in {value!r}")


def cpu_millis(value: Any) -> int:
    return round(parse_quantity(value) * 1000)


def quantity_int(value: Any) -> int:
    return int(parse_quantity(value))


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- nodes ----------------------------------------------------------------------------------


def node_info(node: JsonDict, *, gpu_in_use: int = 0, cpu_in_use: int = 0,
              memory_in_use: int = 0, running_jobs: int = 0,
              recent_failures: int = 0) -> NodeInfo:  # fmt: skip
    """The NodeInfo of a Node object, with usage supplied by the caller (the cache)."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    taints = tuple(
        Taint(key=t.get("key", ""), value=t.get("value", "") or "", effect=TaintEffect(t["effect"]))
        for t in spec.get("taints") or []
        if t.get("effect") in _EFFECTS
    )
    return NodeInfo(
        name=meta.get("name", ""),
        labels=dict(meta.get("labels") or {}),
        gpu_allocatable=quantity_int(alloc.get(GPU_RESOURCE, 0)),
        gpu_in_use=gpu_in_use,
        cpu_millis=cpu_millis(alloc.get("cpu", 0)),
        cpu_in_use_millis=cpu_in_use,
        memory_bytes=quantity_int(alloc.get("memory", 0)),
        memory_in_use_bytes=memory_in_use,
        ready=is_node_ready(node),
        unschedulable=bool(spec.get("unschedulable")),
        taints=taints,
        running_jobs=running_jobs,
        recent_failures=recent_failures,
    )


_EFFECTS = {e.value for e in TaintEffect}


def is_node_ready(node: JsonDict) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


# --- pods -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodRecord:
    """What the operator keeps of one pod: identity, placement, requests, how it ended."""

    namespace: str
    name: str
    uid: str
    node: str
    phase: PodPhase
    gpus: int
    cpu_millis: int
    memory_bytes: int
    scheduler: str
    labels: dict[str, str] = field(default_factory=dict)
    owner_uid: str = ""
    deleting: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    exit_code: int | None = None
    termination_message: str | None = None
    termination_reason: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    @property
    def terminal(self) -> bool:
        return self.phase in (PodPhase.SUCCEEDED, PodPhase.FAILED)

    @property
    def holds_resources(self) -> bool:
        """Bound and not finished: its requests count against its node."""
        return bool(self.node) and not self.terminal

    @property
    def is_operator_pod(self) -> bool:
        return self.labels.get(LABEL_MANAGED_BY) == OPERATOR_NAME

    def info(self) -> PodInfo:
        return PodInfo(
            name=self.name,
            namespace=self.namespace,
            labels=self.labels,
            node_name=self.node,
            phase=self.phase,
            owner_uid=self.owner_uid,
            created_at=self.created_at,
            started_at=self.started_at,
            deleting=self.deleting,
        )


def _requests(containers: list[JsonDict], resource: str, convert: Any) -> int:
    total = 0
    for c in containers:
        res = c.get("resources") or {}
        value = (res.get("requests") or {}).get(resource)
        if value is None:
            value = (res.get("limits") or {}).get(resource)
        if value is not None:
            total += convert(value)
    return int(total)


def pod_requests(spec: JsonDict, resource: str, convert: Any) -> int:
    """A pod's effective request: the sum over containers, or the largest init container."""
    main = _requests(spec.get("containers") or [], resource, convert)
    init = max(
        (_requests([c], resource, convert) for c in spec.get("initContainers") or []), default=0
    )
    return max(main, init)


def pod_record(pod: JsonDict) -> PodRecord:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    owner_uid = next(
        (o.get("uid", "") for o in meta.get("ownerReferences") or [] if o.get("controller")), ""
    )
    exit_code = message = reason = None
    started_at = parse_time(status.get("startTime")) if status.get("phase") else None
    for cs in status.get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated:
            exit_code = terminated.get("exitCode")
            message = terminated.get("message")
            reason = terminated.get("reason")
            break
    try:
        phase = PodPhase(status.get("phase") or "Pending")
    except ValueError:
        phase = PodPhase.UNKNOWN
    return PodRecord(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        node=spec.get("nodeName") or "",
        phase=phase,
        gpus=pod_requests(spec, GPU_RESOURCE, quantity_int),
        cpu_millis=pod_requests(spec, "cpu", cpu_millis),
        memory_bytes=pod_requests(spec, "memory", quantity_int),
        scheduler=spec.get("schedulerName") or "default-scheduler",
        labels=dict(meta.get("labels") or {}),
        owner_uid=owner_uid,
        deleting=bool(meta.get("deletionTimestamp")),
        created_at=parse_time(meta.get("creationTimestamp")) or 0.0,
        started_at=started_at,
        exit_code=exit_code,
        termination_message=message,
        termination_reason=reason,
    )
