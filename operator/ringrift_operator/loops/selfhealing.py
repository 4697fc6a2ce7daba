"""The self-healing loop (leader only): stuck pods are deleted so that their SelfplayJob or
TrainingRun retries, and nodes going offline or coming back are handled (HOST_OFFLINE and
NODE_RECOVERED of the seed).

Each tick reads the cluster cache and asks ``managers.selfhealing``:

- an operator pod bound to a node but not started within ``pending_pod_deadline_seconds``, or
  running beyond ``running_pod_deadline_seconds``, is deleted with a Warning Event
  (``StuckPodDeleted``) on its owner; the owner's reconciler sees the pod gone and retries;
- a node that turned NotReady gets a Warning Event ``HostOffline`` and
  ``host_offline_penalty`` failures on its reputation (its jobs are retried elsewhere by their
  reconcilers, reason ``NodeLost``); Ready again, a Normal Event ``NodeRecovered`` and
  ``recovery_forgiveness`` of those failures taken back. Events about nodes go to the
  ``default`` namespace, as the kubelet's do.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ringrift_operator.api.common import LABEL_OWNER_KIND, LABEL_OWNER_NAME
from ringrift_operator.api.settings import SelfHealingSettings
from ringrift_operator.kube.client import ApiError
from ringrift_operator.kube.events import build_event, post_event
from ringrift_operator.managers.pods import PodPhase
from ringrift_operator.managers.selfhealing import (
    NodeChange,
    PodAge,
    StuckPod,
    find_stuck_pods,
    plan_node_transitions,
    plan_reputation_change,
)
from ringrift_operator.reconcilers.deps import Deps

log = logging.getLogger(__name__)


@dataclass
class SelfHealing:
    deps: Deps
    settings: SelfHealingSettings
    ready: dict[str, bool] = field(default_factory=dict)  # node -> Ready, at the last look
    pods_deleted: int = 0
    offline: int = 0
    recovered: int = 0

    def _pods(self) -> list[PodAge]:
        return [
            PodAge(
                namespace=p.namespace,
                name=p.name,
                owner_kind=p.labels.get(LABEL_OWNER_KIND, ""),
                owner_name=p.labels.get(LABEL_OWNER_NAME, ""),
                node=p.node,
                created_at=p.created_at,
                # A Pending pod has not run (the kubelet may have stamped startTime while
                # pulling the image): it counts as not started.
                started_at=None if p.phase is PodPhase.PENDING else p.started_at,
            )
            for p in list(self.deps.cache.pods.values())
            if p.is_operator_pod and not p.terminal and not p.deleting
        ]

    async def heal(self) -> None:
        s = self.settings
        now = self.deps.clock().timestamp()
        for stuck in find_stuck_pods(
            self._pods(), now=now, pending_deadline=s.pending_pod_deadline_seconds,
            running_deadline=s.running_pod_deadline_seconds,
        ):  # fmt: skip
            await self._recover(stuck)
        current = {name: bool(self.deps.cache.node_ready(name)) for name in self.deps.cache.nodes}
        for change in plan_node_transitions(self.ready, current):
            await self._node_changed(change.node, change.change)
        self.ready = current

    async def _recover(self, stuck: StuckPod) -> None:
        pod = stuck.pod
        record = self.deps.cache.pod(pod.namespace, pod.name)
        try:
            await self.deps.client.delete(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}")
        except ApiError as e:
            if not e.not_found:
                raise
        self.pods_deleted += 1
        self.deps.metrics.healing_action("stuck_pod_deleted")
        log.warning("self-healing: %s; deleted it", stuck.message)
        if pod.owner_kind and pod.owner_name and record is not None:
            involved = {"apiVersion": "ringrift.ai/v1alpha1", "kind": pod.owner_kind,
                        "name": pod.owner_name, "namespace": pod.namespace,
                        "uid": record.owner_uid}  # fmt: skip
            message = f"{stuck.reason.value}: {stuck.message}; deleted so it is retried"
            await self._event(involved, "Warning", "StuckPodDeleted", message)

    async def _node_changed(self, node: str, change: NodeChange) -> None:
        s = self.settings
        delta = plan_reputation_change(change, penalty=s.host_offline_penalty,
                                       forgiveness=s.recovery_forgiveness)  # fmt: skip
        cache = self.deps.cache
        if change is NodeChange.OFFLINE:
            at = time.monotonic()
            for _ in range(delta):
                cache.record_failure(node, at=at)
            self.offline += 1
            kind, message = (
                "Warning",
                (
                    f"node {node} is NotReady: its jobs are retried elsewhere; "
                    f"{delta} failure(s) counted against its reputation"
                ),
            )
            self.deps.metrics.healing_action("host_offline")
        else:
            taken = cache.forgive(node, -delta)
            self.recovered += 1
            kind, message = (
                "Normal",
                (f"node {node} is Ready again; {taken} failure(s) taken back from its reputation"),
            )
            self.deps.metrics.healing_action("node_recovered")
        log.info("self-healing: %s", message)
        meta: dict[str, Any] = (cache.nodes.get(node) or {}).get("metadata") or {}
        involved = {"apiVersion": "v1", "kind": "Node", "name": node, "uid": meta.get("uid", "")}
        await self._event(involved, kind, change.value, message)

    async def _event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        event = build_event(involved=involved, type=type_, reason=reason, message=message,
                            now=self.deps.clock(), instance=self.deps.identity)  # fmt: skip
        await post_event(self.deps.client, event)

    def status(self) -> dict[str, Any]:
        return {
            "stuck_pods_deleted": self.pods_deleted,
            "hosts_offline": self.offline,
            "nodes_recovered": self.recovered,
            "nodes_not_ready": sorted(n for n, r in self.ready.items() if not r),
        }
