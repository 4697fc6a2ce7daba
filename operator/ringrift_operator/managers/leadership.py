"""Leader election over a ``coordination.k8s.io`` Lease, as pure decisions.

The elector (``loops.leadership``) reads the Lease, asks :func:`decide_lease` what to do and
writes what it returns. The epoch is ``leaseTransitions``: it grows by one every time another
replica takes over, so a stale leader's writes carry a smaller epoch than the current one's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

JsonDict = dict[str, Any]


class LeaseAction(StrEnum):
    CREATE = "Create"  # no Lease yet: create it, held by us
    ACQUIRE = "Acquire"  # expired or released: take it over (transitions + 1)
    RENEW = "Renew"  # ours: renew it
    STANDBY = "Standby"  # somebody else holds it and it is fresh


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What matters of a Lease object."""

    holder: str
    duration_seconds: int
    renew_time: datetime | None
    transitions: int
    resource_version: str = ""


@dataclass(frozen=True, slots=True)
class LeaseDecision:
    action: LeaseAction
    body: JsonDict | None  # the Lease spec to write (None for STANDBY)
    epoch: int  # the epoch we would hold after writing it


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_micro_time(when: datetime) -> str:
    """MicroTime as the API server writes it: RFC 3339 with microseconds."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_view(obj: JsonDict | None) -> LeaseView | None:
    if obj is None:
        return None
    spec = obj.get("spec") or {}
    return LeaseView(
        holder=spec.get("holderIdentity") or "",
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        renew_time=parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=(obj.get("metadata") or {}).get("resourceVersion", ""),
    )


def is_expired(lease: LeaseView, *, now: datetime) -> bool:
    if not lease.holder or lease.renew_time is None:
        return True
    return now > lease.renew_time + timedelta(seconds=lease.duration_seconds)


def decide_lease(
    lease: LeaseView | None, *, identity: str, duration_seconds: int, now: datetime
) -> LeaseDecision:
    """Create, take over, renew or stand by."""
    stamp = format_micro_time(now)
    if lease is None:
        body = {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 1,
        }
        return LeaseDecision(LeaseAction.CREATE, body, epoch=1)
    if lease.holder == identity:
        body = {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": stamp,
            "leaseTransitions": lease.transitions,
        }
        return LeaseDecision(LeaseAction.RENEW, body, epoch=lease.transitions)
    if is_expired(lease, now=now):
        body = {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": lease.transitions + 1,
        }
        return LeaseDecision(LeaseAction.ACQUIRE, body, epoch=lease.transitions + 1)
    return LeaseDecision(LeaseAction.STANDBY, None, epoch=lease.transitions)


def holds_leadership(*, last_renewed: float | None, now: float, duration_seconds: int,
                     margin_seconds: float) -> bool:  # fmt: skip
    """Whether we may still act: our last successful renewal (a monotonic time) is recent
    enough that nobody else can have taken over. A replica that was paused (SIGSTOP) wakes with
    this False and must stop before it writes anything."""
    if last_renewed is None:
        return False
    return now - last_renewed < duration_seconds - margin_seconds
