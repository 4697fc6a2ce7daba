"""Helpers for the chaos scenarios: figures reported and kept, simulator rules for a namespace,
SelfplayJob bursts, and the API server's audit log (who wrote what, when)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from operator_support import GROUP, VERSION, spj

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(
    os.environ.get("RINGRIFT_CHAOS_RESULTS") or REPO / "bench" / "results" / "chaos-faults.json"
)
TERMINAL = ("Complete", "Failed")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def record(scenario: str, **figures: Any) -> dict[str, Any]:
    """Print a scenario's figures and append them to the results file (a JSON list)."""
    entry = {"scenario": scenario, "at": datetime.now(UTC).isoformat(timespec="seconds"),
             **figures}  # fmt: skip
    print(f"\nCHAOS {scenario}: " + json.dumps(figures, sort_keys=True))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        runs: list[Any] = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        runs = []
    runs.append(entry)
    RESULTS.write_text(json.dumps(runs, indent=2) + "\n")
    return entry


def create_burst(custom: Any, namespace: str, count: int, *, prefix: str = "b") -> list[str]:
    """``count`` SelfplayJobs created as fast as a client can (8 requests in flight)."""
    names = [f"{prefix}-{i:03d}" for i in range(count)]

    def create(name: str) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "selfplayjobs", spj(name, games=4)
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, names))
    return names


def phases(custom: Any, namespace: str) -> dict[str, str]:
    """SelfplayJob name -> phase ('' before the operator wrote any status)."""
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "selfplayjobs")
    return {
        o["metadata"]["name"]: (o.get("status") or {}).get("phase", "") for o in listed["items"]
    }


def terminal_count(custom: Any, namespace: str) -> int:
    return sum(1 for p in phases(custom, namespace).values() if p in TERMINAL)


def pods_per_attempt(core: Any, namespace: str) -> Counter[tuple[str, str]]:
    """(owner, attempt) -> pods that exist for it, from the pods' labels."""
    counts: Counter[tuple[str, str]] = Counter()
    for pod in core.list_namespaced_pod(namespace).items:
        labels = pod.metadata.labels or {}
        key = (labels.get("ringrift.ai/owner-name", ""), labels.get("ringrift.ai/attempt", ""))
        counts[key] += 1
    return counts


# --- the API server's audit log ---------------------------------------------------------------


def audit_time(event: dict[str, Any]) -> float:
    """When the API server received the request (epoch seconds)."""
    stamp = str(event.get("requestReceivedTimestamp") or event.get("stageTimestamp"))
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def audit_writes(
    sandbox: Any, *, namespace: str | None = None, since: float = 0.0
) -> list[dict[str, Any]]:
    """Write requests (completed) the API server audited, optionally in one namespace and from
    ``since`` (epoch seconds)."""
    found = []
    for event in sandbox.audit_events():
        if event.get("stage") != "ResponseComplete" or event.get("verb") not in WRITE_VERBS:
            continue
        ref = event.get("objectRef") or {}
        if namespace is not None and ref.get("namespace") != namespace:
            continue
        if audit_time(event) < since:
            continue
        found.append(event)
    return found


def by_agent(events: Iterable[dict[str, Any]], needle: str) -> list[dict[str, Any]]:
    return [e for e in events if needle in str(e.get("userAgent", ""))]


def succeeded(event: dict[str, Any]) -> bool:
    return int((event.get("responseStatus") or {}).get("code") or 0) < 400


def pod_creations(sandbox: Any, namespace: str) -> Counter[str]:
    """Pod name -> successful creations of a pod of that name (the names are deterministic per
    job attempt, so more than one is a duplicate attempt)."""
    counts: Counter[str] = Counter()
    for e in audit_writes(sandbox, namespace=namespace):
        ref = e.get("objectRef") or {}
        pod = ref.get("resource") == "pods" and not ref.get("subresource")
        if e["verb"] == "create" and pod and succeeded(e):
            counts[str(ref.get("name", ""))] += 1
    return counts


def monotonic_to_wall(t: float) -> float:
    """A time.monotonic() reading as epoch seconds."""
    return time.time() - (time.monotonic() - t)
