"""Kubernetes Events about the operator's resources (what ``kubectl describe`` shows)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from ringrift_operator.api.common import OPERATOR_NAME
from ringrift_operator.api.meta import rfc3339
from ringrift_operator.kube.client import ApiError, KubeClient

log = logging.getLogger(__name__)


def build_event(
    *, involved: dict[str, Any], type: str, reason: str, message: str, now: datetime,
    instance: str,
) -> dict[str, Any]:  # fmt: skip
    """A core/v1 Event about ``involved`` (apiVersion, kind, name, namespace, uid)."""
    ts = rfc3339(now)
    namespace = involved.get("namespace") or "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{involved['name']}.{uuid.uuid4().hex[:16]}",
            "namespace": namespace,
        },
        "involvedObject": involved,
        "type": type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": OPERATOR_NAME},
        "reportingComponent": OPERATOR_NAME,
        "reportingInstance": instance,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "eventTime": None,
        "count": 1,
    }


async def post_event(client: KubeClient, event: dict[str, Any]) -> None:
    """Post an Event; failing to post one is logged, never fatal."""
    namespace = event["metadata"]["namespace"]
    try:
        await client.create(f"/api/v1/namespaces/{namespace}/events", event)
    except (ApiError, OSError, TimeoutError) as e:
        log.warning("could not post event %s: %s", event.get("reason"), e)
