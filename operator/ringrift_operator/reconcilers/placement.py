"""Putting a decided pod on its node, shared by the reconcilers that place pods themselves
(SelfplayJob, TrainingRun): the pod is created with ``spec.nodeName`` already set — one write that
is both the create and the placement, so no scheduler ever looks at it — and a pod that already
exists (a retried reconcile, or one an earlier version created unbound) is checked or bound.

Also the small helpers the placing reconcilers share: turning a spec toleration into the
ranking's, and summarising why no node fits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ringrift_operator.api.common import ANNOTATION_DECIDED_AT, ANNOTATION_POWER_SCORE
from ringrift_operator.kube.client import ApiError
from ringrift_operator.managers.nodes import TaintEffect, Toleration
from ringrift_operator.reconcilers.deps import Deps


class PodRefusedError(Exception):
    """The API server refused to create the pod (400/403/422: a spec the CRD schema let through
    but the Pod API does not, Pod Security, a namespace being terminated; 404: the namespace is
    gone): retrying at once cannot help."""


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def annotate_decision(manifest: dict[str, Any], *, score: int | None, decided_at: datetime) -> None:
    """Record on the pod when its node was chosen (microseconds, UTC) and the node's power
    score: the order of decisions, which the creates' order need not keep."""
    notes = manifest["metadata"].setdefault("annotations", {})
    notes[ANNOTATION_DECIDED_AT] = decided_at.isoformat(timespec="microseconds")
    if score is not None:
        notes[ANNOTATION_POWER_SCORE] = str(score)


async def create_on_node(deps: Deps, namespace: str, manifest: dict[str, Any], node: str) -> None:
    """Create the pod bound to ``node``. Idempotent: a pod of that name already bound to a node
    is taken as placed; one still unbound is bound to ``node`` (``pods/binding``). A pod the API
    server refuses raises :class:`PodRefusedError`."""
    manifest["spec"]["nodeName"] = node
    name = manifest["metadata"]["name"]
    try:
        created = await deps.client.create(f"/api/v1/namespaces/{namespace}/pods", manifest)
    except ApiError as e:
        # 404: the namespace is gone (the job goes with it; its status write finds that out).
        if e.status in (400, 403, 404, 422):
            raise PodRefusedError(str(e)) from e
        if not e.conflict:
            raise
        current = await deps.client.get(pod_path(namespace, name))
        if not (current.get("spec") or {}).get("nodeName"):
            await _bind(deps, namespace, name, node)
            return
        deps.cache.upsert_pod(current)
        return
    if deps.cache.pod(namespace, name) is None:
        # The watch has not shown it yet: the next reconcile sees the pod (bound) from here.
        deps.cache.upsert_pod(created)


async def _bind(deps: Deps, namespace: str, name: str, node: str) -> None:
    try:
        await deps.client.bind_pod(namespace=namespace, pod=name, node=node)
    except ApiError as e:
        # Bound meanwhile (a previous run of this reconcile got this far): fine.
        if not e.conflict:
            raise
        current = await deps.client.get(pod_path(namespace, name))
        if not (current.get("spec") or {}).get("nodeName"):
            raise
        deps.cache.upsert_pod(current)


def toleration(t: Any) -> Toleration:
    """A spec toleration (``api``'s model) as the ranking's."""
    return Toleration(
        key=t.key or None,
        operator=t.operator.value,
        value=t.value,
        effect=TaintEffect(t.effect.value) if t.effect else None,
    )


def summarize(lines: list[str], limit: int = 4) -> str:
    """The first ``limit`` reasons of a ranking's explanation, and how many more there are."""
    if not lines:
        return "no nodes"
    head = "; ".join(lines[:limit])
    return head + (f"; and {len(lines) - limit} more" if len(lines) > limit else "")
