"""Self-healing decisions (the seed's SelfHealingLoop and its HOST_OFFLINE / NODE_RECOVERED
handling): which of the operator's pods are stuck, and which nodes went offline or came back.

Called by ``loops.selfhealing`` every tick with plain snapshots; it applies the plan (deletes the
stuck pods so that their SelfplayJob or TrainingRun reconciler retries, posts the Events, moves
the nodes' reputation). The reconcilers already retry jobs whose node is lost; this is the part
that no single resource's reconcile sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class StuckReason(StrEnum):
    NEVER_STARTED = "PodNeverStarted"  # bound to a node, its containers never ran
    NO_PROGRESS = "PodNoProgress"  # running far beyond what any run should take


@dataclass(frozen=True, slots=True)
class PodAge:
    """One live operator pod: when it was created, when (if) it started, who owns it."""

    namespace: str
    name: str
    owner_kind: str
    owner_name: str
    node: str
    created_at: float
    started_at: float | None


@dataclass(frozen=True, slots=True)
class StuckPod:
    pod: PodAge
    reason: StuckReason
    message: str


def find_stuck_pods(
    pods: Sequence[PodAge], *, now: float, pending_deadline: float, running_deadline: float
) -> list[StuckPod]:
    """Bound pods not started within ``pending_deadline`` seconds of their creation, and pods
    running for more than ``running_deadline`` seconds. Unbound pods are the reconcilers'
    business (dispatch timeouts), not stuck."""
    stuck = []
    for pod in pods:
        if not pod.node:
            continue
        if pod.started_at is None:
            waited = now - pod.created_at
            if waited > pending_deadline:
                message = (
                    f"pod {pod.name} on {pod.node} has not started after {waited:.0f}s "
                    f"(deadline {pending_deadline:.0f}s)"
                )
                stuck.append(StuckPod(pod, StuckReason.NEVER_STARTED, message))
        elif now - pod.started_at > running_deadline:
            message = (
                f"pod {pod.name} on {pod.node} has run {now - pod.started_at:.0f}s without "
                f"finishing (deadline {running_deadline:.0f}s)"
            )
            stuck.append(StuckPod(pod, StuckReason.NO_PROGRESS, message))
    return stuck


class NodeChange(StrEnum):
    OFFLINE = "HostOffline"
    RECOVERED = "NodeRecovered"


@dataclass(frozen=True, slots=True)
class NodeTransition:
    node: str
    change: NodeChange


def plan_node_transitions(
    known: Mapping[str, bool], current: Mapping[str, bool]
) -> list[NodeTransition]:
    """Nodes that went offline (Ready → NotReady, or first seen NotReady) or recovered
    (NotReady → Ready) between two looks; ``known``/``current`` map node → Ready. A node that
    disappeared is neither: its jobs are lost through the reconcilers."""
    changes = []
    for node in sorted(current):
        ready = current[node]
        was = known.get(node)
        if not ready and was is not False:
            changes.append(NodeTransition(node, NodeChange.OFFLINE))
        elif ready and was is False:
            changes.append(NodeTransition(node, NodeChange.RECOVERED))
    return changes


def plan_reputation_change(change: NodeChange, *, penalty: int, forgiveness: int) -> int:
    """Failures to add (> 0) or forgive (< 0) on a node's reputation for a transition: going
    offline costs ``penalty``; recovering gives back at most what going offline cost."""
    if change is NodeChange.OFFLINE:
        return penalty
    return -min(forgiveness, penalty)
