"""The dependencies every reconciler and loop receives: built once at startup, passed down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.kube.cache import ClusterCache
from ringrift_operator.kube.client import KubeClient
from ringrift_operator.managers.jobs import WorkloadScript, WorkloadSettings
from ringrift_operator.state.history import HistoryStore


def utc_now() -> datetime:
    return datetime.now(UTC)


def workload_settings(settings: OperatorSettings) -> WorkloadSettings:
    w = settings.workload
    return WorkloadSettings(
        image=w.image,
        image_pull_policy=w.image_pull_policy,
        data_host_path=w.data_host_path,
        allowed_archs=tuple(w.architectures),
        commands={WorkloadScript(k): tuple(v) for k, v in w.commands.items()},
    )


@dataclass
class Metrics:
    """Hooks the web layer fills with Prometheus instruments; no-ops by default."""

    placement_latency: Callable[[float], None] = lambda seconds: None
    job_outcome: Callable[[str, str], None] = lambda kind, outcome: None
    games: Callable[[str, int], None] = lambda config, n: None


@dataclass
class Deps:
    client: KubeClient
    cache: ClusterCache
    settings: OperatorSettings
    workload: WorkloadSettings
    history: HistoryStore | None = None
    clock: Callable[[], datetime] = utc_now
    epoch: Callable[[], int] = lambda: 0
    identity: str = "ringrift-operator"
    placement_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    metrics: Metrics = field(default_factory=Metrics)
    resources: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """Latest body of every watched custom resource, by (kind, namespace, name)."""
