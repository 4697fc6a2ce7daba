"""Writing what a reconcile decided, the same way for every resource: the status through the
``/status`` subresource (only when it changed, remembering the object the write returned), the
Events of the transitions, and — for a body the models refuse — a Failed status and an Event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from ringrift_operator.api.common import API_VERSION
from ringrift_operator.api.meta import InvalidResourceError, ResourceBase, to_wire
from ringrift_operator.api.selfplayjob import TERMINAL_PHASES as SELFPLAYJOB_TERMINAL
from ringrift_operator.api.trainingrun import TERMINAL_PHASES as TRAININGRUN_TERMINAL
from ringrift_operator.kube.client import ApiError
from ringrift_operator.kube.events import build_event, post_event
from ringrift_operator.reconcilers.deps import Deps

log = logging.getLogger(__name__)
GROUP_PATH = f"/apis/{API_VERSION}"
TERMINAL_PHASES = frozenset(str(p) for p in SELFPLAYJOB_TERMINAL | TRAININGRUN_TERMINAL)


class EventLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


def resource_path(plural: str, namespace: str, name: str) -> str:
    return f"{GROUP_PATH}/namespaces/{namespace}/{plural}/{name}"


def involved_object(obj: ResourceBase) -> dict[str, Any]:
    return {
        "apiVersion": obj.api_version,
        "kind": obj.kind,
        "name": obj.name,
        "namespace": obj.namespace,
        "uid": obj.uid,
    }


async def post_events(deps: Deps, involved: dict[str, Any], events: Sequence[EventLike]) -> None:
    for ev in events:
        await post_event(
            deps.client,
            build_event(involved=involved, type=ev.type, reason=ev.reason, message=ev.message,
                        now=deps.clock(), instance=deps.identity),
        )  # fmt: skip


async def write_status(
    deps: Deps,
    obj: ResourceBase,
    *,
    plural: str,
    old: BaseModel,
    new: BaseModel,
    events: Sequence[EventLike],
) -> bool:
    """Patch ``new`` as the status of ``obj`` when it differs from ``old``, then post the
    events. False when the object is gone (nothing posted)."""
    wire = to_wire(new)
    if wire != to_wire(old):
        try:
            written = await deps.client.patch(
                f"{resource_path(plural, obj.namespace, obj.name)}/status", {"status": wire}
            )
        except ApiError as e:
            if not e.not_found:
                raise
            return False
        deps.remember(obj.kind, written)
        count_outcomes(deps, obj.kind, old, new)
    await post_events(deps, involved_object(obj), events)
    return True


async def report_invalid(
    deps: Deps, body: dict[str, Any], error: InvalidResourceError, *, kind: str, plural: str
) -> None:
    """A body the schema let through but the models refuse: say so in status and an Event,
    once (the same message is not written again)."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    message = error.summary(max_length=900)
    if (body.get("status") or {}).get("message") == message:
        return
    status = {"phase": "Failed", "reason": "InvalidSpec", "message": message,
              "observedGeneration": meta.get("generation", 0)}  # fmt: skip
    try:
        await deps.client.patch(
            f"{resource_path(plural, namespace, name)}/status", {"status": status}
        )
    except ApiError as e:
        log.warning("could not report invalid %s %s/%s: %s", kind, namespace, name, e)
    involved = {"apiVersion": body.get("apiVersion"), "kind": kind, "name": name,
                "namespace": namespace, "uid": meta.get("uid")}  # fmt: skip
    await post_events(deps, involved, [_Invalid(message)])


class _Invalid:
    type = "Warning"
    reason = "InvalidSpec"

    def __init__(self, message: str) -> None:
        self.message = message


def count_outcomes(deps: Deps, kind: str, old: BaseModel, new: BaseModel) -> None:
    """Feed the outcome and games counters from a status that was written: a phase entered
    that is terminal counts once per kind and phase; games completed count by their increase.
    A status the API server already holds is never written again, so nothing counts twice."""
    phase = getattr(new, "phase", None)
    if phase is not None and phase != getattr(old, "phase", None) and str(phase) in TERMINAL_PHASES:
        deps.metrics.job_outcome(kind, str(phase))
    before, after = getattr(old, "games_completed", None), getattr(new, "games_completed", None)
    config = getattr(new, "config", None)
    if isinstance(after, int) and isinstance(before, int) and after > before and config:
        deps.metrics.games(str(config), after - before)
