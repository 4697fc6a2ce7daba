"""The dependencies every reconciler and loop receives: built once at startup, passed down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.kube.cache import ClusterCache
from ringrift_operator.kube.client import KubeClient
from ringrift_operator.managers.jobs import WorkloadScript, WorkloadSettings
from ringrift_operator.managers.looping import LoopSnapshot
from ringrift_operator.managers.trainingrun import TrainingStart
from ringrift_operator.reconcilers.manifests import ManifestStore
from ringrift_operator.reconcilers.syncrounds import SyncRounds
from ringrift_operator.state.history import HistoryStore
from ringrift_operator.state.rows import ModelRecord


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
    reconcile: Callable[[float, bool], None] = lambda seconds, ok: None
    # The data plane (SyncPlan rounds and manifest collection):
    sync_pending: Callable[[str, str, int, int], None] = lambda ns, plan, files, size: None
    sync_moved: Callable[[str, str, int, int], None] = lambda ns, plan, files, size: None
    sync_pull: Callable[[str, str, str], None] = lambda ns, plan, outcome: None
    sync_forget: Callable[[str, str], None] = lambda ns, plan: None
    manifest_error: Callable[[str, str], None] = lambda node, error: None
    # The autopilot loops:
    autopilot_created: Callable[[str], None] = lambda kind: None
    healing_action: Callable[[str], None] = lambda action: None
    prediction: Callable[[str, float | None], None] = lambda signal, seconds: None
    prediction_alert: Callable[[str], None] = lambda signal: None
    loop_snapshots: Callable[[], Sequence[LoopSnapshot]] = lambda: ()
    """The leader's loops as the runner sees them (set by the controller; read when scraped)."""


@dataclass(frozen=True, slots=True)
class Unwritten:
    """A status a reconcile decided and left for the object's next reconcile to write, with its
    Events: a placement's (the pod is on its node; recording it can wait behind other
    placements, and folds in what the pod did meanwhile)."""

    uid: str
    status: Any
    events: tuple[Any, ...]
    since: float = 0.0  # monotonic: when it was decided


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
    unwritten: dict[tuple[str, str, str], Unwritten] = field(default_factory=dict)
    """Statuses decided but not written yet, by (kind, namespace, name) (see ``Unwritten``)."""
    placements_backlogged: Callable[[], bool] = lambda: False
    """Whether jobs are waiting for a node (lately): status writes that can wait, wait."""
    deferred: set[tuple[str, str, str]] = field(default_factory=set)
    """Keys whose status write waits for the placement backlog to clear (then queued again)."""
    training_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a TrainingRun passes its gates, so two runs of a config never both start."""
    training_starts: list[TrainingStart] = field(default_factory=list)
    """Trainings this process started (config, run, data hash, time): the cooldown and dedupe
    see a start before the run's status comes back through the watch."""
    promoted_models: dict[str, ModelRecord | None] = field(default_factory=dict)
    """config -> promoted model (None: none), as this process promoted or read it
    (``reconcilers.models``)."""
    manifests: ManifestStore | None = None
    """The node agents' manifests (built from ``settings.agent_token_file`` when not given)."""
    sync_rounds: SyncRounds = field(default_factory=SyncRounds)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    """The operator's Prometheus registry (``web.metrics`` fills it; no global registry)."""

    def __post_init__(self) -> None:
        if self.manifests is None:
            self.manifests = ManifestStore(
                token_file=Path(self.settings.agent_token_file),
                clock=lambda: self.clock().timestamp(),
                on_error=lambda node, error: self.metrics.manifest_error(node, error),
            )

    def remember(self, kind: str, body: dict[str, Any]) -> None:
        """Keep the object a write returned, unless the watch already brought a newer one: the
        next reconcile then decides from what we wrote, not from a body older than it."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        known = self.resources.get(key)
        if known is None:
            return  # deleted meanwhile, or not ours to track
        if _newer_or_equal((known.get("metadata") or {}).get("resourceVersion"),
                           meta.get("resourceVersion")):  # fmt: skip
            return
        self.resources[key] = body

    @property
    def store(self) -> ManifestStore:
        """``manifests``, never None after construction."""
        assert self.manifests is not None
        return self.manifests


def _newer_or_equal(a: Any, b: Any) -> bool:
    """Whether resourceVersion ``a`` is at least ``b``. Versions are opaque by contract but
    integers in practice; when they are not, the later write wins."""
    try:
        return int(a) >= int(b)
    except (TypeError, ValueError):
        return False
