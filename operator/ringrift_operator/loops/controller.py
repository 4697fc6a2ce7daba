"""The operator's running core: the cluster cache and its reflectors, the work queue and its
workers, and the periodic resync, wired to the reconcilers.

Custom-resource watch events arrive from kopf (``handlers``) through :meth:`Controller.observe`;
pod and node changes from the cache's listeners; every key is also requeued every
``resync_seconds`` (level-based reconciliation: a missed event only delays, never loses work).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ringrift_operator.api.common import LABEL_OWNER_KIND, LABEL_OWNER_NAME
from ringrift_operator.api.contract import JobKind
from ringrift_operator.api.selfplayjob import KIND as SELFPLAYJOB
from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.api.syncplan import KIND as SYNCPLAN
from ringrift_operator.api.trainingrun import KIND as TRAININGRUN
from ringrift_operator.kube.cache import ClusterCache, start_cache_reflectors, stop_tasks
from ringrift_operator.kube.client import KubeClient, load_credentials
from ringrift_operator.kube.events import build_event, post_event
from ringrift_operator.kube.snapshots import PodRecord
from ringrift_operator.loops.autopilot import Autopilot
from ringrift_operator.loops.leadership import LeaderElector
from ringrift_operator.loops.runner import LoopRunner
from ringrift_operator.managers.jobs import pod_name
from ringrift_operator.reconcilers.deps import Deps, workload_settings
from ringrift_operator.reconcilers.selfplayjob import reconcile_selfplayjob
from ringrift_operator.reconcilers.syncplan import forget_syncplan, reconcile_syncplan
from ringrift_operator.reconcilers.trainingrun import reconcile_trainingrun
from ringrift_operator.reconcilers.workqueue import WorkQueue, run_workers
from ringrift_operator.state.history import HistoryStore
from ringrift_operator.state.rows import EpochRecord

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)
Reconciler = Callable[[Deps, dict[str, Any]], Awaitable[float | None]]

RECONCILERS: dict[str, Reconciler] = {
    SELFPLAYJOB: reconcile_selfplayjob,
    SYNCPLAN: reconcile_syncplan,
    TRAININGRUN: reconcile_trainingrun,
}
# Called when a resource's DELETED event arrives: stop work held in memory for it.
ON_DELETE: dict[str, Callable[[Deps, dict[str, Any]], None]] = {SYNCPLAN: forget_syncplan}
TERMINAL = {"Complete", "Failed", "Expired", "Promoted", "Skipped"}


class Controller:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.queue: WorkQueue[Key] = WorkQueue(priority=self._priority)
        self.tasks: list[asyncio.Task[Any]] = []
        self.reconciles = 0
        self.reconcile_failures = 0
        self.started = False
        self.elector: LeaderElector | None = None
        self.autopilot: Autopilot | None = None
        self.loop_runner: LoopRunner | None = None
        deps.cache.listeners.append(self._on_cache_change)
        self._backlog_at = -1e9  # monotonic: when jobs last waited for a node
        deps.placements_backlogged = self._placements_backlogged

    # ---- lifecycle ---------------------------------------------------------------------------
    @classmethod
    async def create(
        cls,
        settings: OperatorSettings,
        *,
        kubeconfig: str | None = None,
        identity: str = "",
        on_lost: Callable[[str], None] | None = None,
    ) -> Controller:
        """Connect and build the dependencies; nothing acts until :meth:`start`."""
        # A connection per worker, and room for the reflectors' watches and the autopilot.
        client = await KubeClient.connect(
            load_credentials(kubeconfig), max_connections=max(64, settings.workers + 16),
            identity=identity,
        )  # fmt: skip
        history = await _open_history(settings)
        deps = Deps(
            client=client, cache=ClusterCache(), settings=settings,
            workload=workload_settings(settings), history=history,
            identity=identity or "ringrift-operator",
        )  # fmt: skip
        self = cls(deps)
        if settings.leader_election:
            # Its own connection: renewals must never queue behind a burst of reconciles.
            # Its own connection: renewals must never queue behind a burst of reconciles; and a
            # renewal that hangs must not use up the lease: give up on it early and retry.
            lease_client = await KubeClient.connect(
                client.credentials, max_connections=2, identity=identity,
                request_timeout=max(2.0, settings.lease_duration_seconds / 2),
            )  # fmt: skip
            self.elector = LeaderElector(
                lease_client,
                namespace=settings.lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
                name=settings.lease_name,
                identity=deps.identity,
                clock=deps.clock,
                duration_seconds=settings.lease_duration_seconds,
                renew_interval=max(1.0, settings.lease_duration_seconds / 5),
                on_lost=on_lost,
            )
        return self

    async def start(self) -> None:
        """Wait for the Lease (standby until then), then sync the caches and reconcile."""
        deps = self.deps
        if self.elector is not None:
            await self.elector.acquire()
            elector = self.elector
            deps.client.write_guard = elector.write_allowed
            deps.epoch = lambda: elector.epoch
            self.tasks.append(asyncio.create_task(elector.run(), name="lease"))
            if deps.history is not None:
                deps.history.enqueue(
                    EpochRecord(epoch=elector.epoch, holder=deps.identity,
                                acquired_at=deps.clock().timestamp())
                )  # fmt: skip
        await self._load_reputation()
        self.tasks += start_cache_reflectors(
            deps.client, deps.cache, stall_seconds=float(deps.settings.watch_stall_seconds)
        )
        await asyncio.wait_for(deps.cache.synced.wait(), timeout=120)
        self.tasks.append(
            asyncio.create_task(
                run_workers(self.queue, self._reconcile, workers=deps.settings.workers,
                            on_duration=self._on_reconcile),
                name="workers",
            )
        )  # fmt: skip
        self.tasks.append(asyncio.create_task(self._resync(), name="resync"))
        self.tasks.append(asyncio.create_task(self._release_deferred(), name="deferred"))
        # The leader's loops: the self-play ones only with the autopilot on (disabled ones are
        # listed in /status as such); self-healing, monitoring, Elo sync, manifests always.
        self.autopilot = Autopilot(deps, deps.settings.autopilot)
        runner = self.loop_runner = LoopRunner(self.autopilot.loops())
        deps.metrics.loop_snapshots = runner.snapshots
        await runner.start_all()
        if deps.history is not None:
            self.tasks.append(
                asyncio.create_task(self._flush_history(deps.history), name="history")
            )
        self.started = True
        await self._report_history_recovery()
        log.info("controller started (epoch %d): %d nodes, %d pods cached", deps.epoch(),
                 len(deps.cache.nodes), len(deps.cache.pods))  # fmt: skip

    async def _load_reputation(self) -> None:
        """Failures recorded by earlier leaders still count against their nodes."""
        deps = self.deps
        window = float(deps.settings.reputation_window_seconds)
        deps.cache.reputation_window = window
        if deps.history is None:
            return
        now = deps.clock().timestamp()
        try:
            events = await deps.history.list_node_reputation(since=now - window)
        except Exception:
            log.exception("reading node reputation from the history store failed")
            return
        mono = time.monotonic()
        for rep in events:
            # Dated by the last failure: they age out together, no later than the newest would.
            at = mono - (now - (rep.last_failure_at or now))
            for _ in range(rep.failures):
                deps.cache.record_failure(rep.node, at=at)

    async def _report_history_recovery(self) -> None:
        """A corrupt history file moved aside at startup (logged by the store) is also a Warning
        Event on this operator's Pod (``POD_NAME``/``POD_NAMESPACE`` from the downward API),
        where ``kubectl describe pod`` shows it. Posted by the leader only: it writes."""
        history, deps = self.deps.history, self.deps
        pod, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
        if history is None or history.recovered_from is None or not (pod and namespace):
            return
        involved = {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace}
        message = (
            f"history database {history.path} was corrupt: moved aside to "
            f"{history.recovered_from.name}; started a fresh, empty history (live state is in "
            f"Kubernetes, only history is lost)"
        )
        event = build_event(involved=involved, type="Warning", reason="HistoryRecovered",
                            message=message, now=deps.clock(), instance=deps.identity)  # fmt: skip
        await post_event(deps.client, event)

    def _on_reconcile(self, seconds: float, ok: bool) -> None:
        self.reconcile_failures += 0 if ok else 1
        self.deps.metrics.reconcile(seconds, ok)

    # ---- health --------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        if self.elector is not None and not self.started:
            return (
                True,
                f"standby: waiting for lease {self.elector.name} (held by "
                f"{self.elector.leader or 'nobody'})",
            )
        if not self.started:
            return False, "starting"
        if self.elector is not None and not self.elector.is_leader():
            return False, "lost the lease"
        return True, "ok"

    def status(self) -> dict[str, Any]:
        """The seed's /status: role, epoch, leader, managers and loops."""
        deps = self.deps
        elector = self.elector
        total, used = deps.cache.gpu_totals()
        phases: dict[str, dict[str, int]] = {}
        for (kind, _, _), body in deps.resources.items():
            phase = (body.get("status") or {}).get("phase") or "Pending"
            phases.setdefault(kind, {}).setdefault(phase, 0)
            phases[kind][phase] += 1
        return {
            "identity": deps.identity,
            "role": elector.role if elector else "leader",
            "epoch": deps.epoch(),
            "leader": elector.leader if elector else deps.identity,
            "started": self.started,
            "managers": {
                "node_selector": {"status": "healthy", "nodes": len(deps.cache.nodes),
                                  "not_ready": deps.cache.not_ready_nodes(),
                                  "recent_failures": deps.cache.failures_by_node()},
                "job_manager": {"status": "healthy", "pods": len(deps.cache.pods),
                                "gpus_total": total, "gpus_in_use": used},
                "reconciler": {"status": "healthy" if self.reconcile_failures < 10 else "degraded",
                               "reconciles": self.reconciles, "failures": self.reconcile_failures,
                               "queue": len(self.queue), "unwritten": len(deps.unwritten)},
                "state_manager": {"status": "healthy" if deps.history is not None else "degraded",
                                  "pending_writes": deps.history.pending if deps.history else 0,
                                  "recovered_from": str(deps.history.recovered_from or "")
                                  if deps.history else ""},
            },
            "resources": phases,
            "loops": self.loop_runner.health().as_dict() if self.loop_runner else {},
            "autopilot": self.autopilot.status() if self.autopilot else {"enabled": False},
            "elo": self.autopilot.elo_sync.status()["ratings"] if self.autopilot else {},
            "watches": {kind: health() for kind, health in deps.cache.watches.items()},
            "requests": {f"{v} {r}": n for (v, r), n in deps.client.stats.counts.items()},
        }  # fmt: skip

    async def stop(self) -> None:
        if self.loop_runner is not None:
            await self.loop_runner.stop_all(timeout=10)
        await stop_tasks(self.tasks)
        if self.elector is not None:
            await self.elector.release()
            await self.elector.client.close()
        await self.deps.sync_rounds.close()
        await self.deps.store.close()
        if self.deps.history is not None:
            try:
                await self.deps.history.close()
            except Exception:
                log.exception("closing the history store failed")
        await self.deps.client.close()

    # ---- inputs ------------------------------------------------------------------------------
    def observe(self, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event of a custom resource (from kopf)."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.deps.resources.pop(key, None)
            self.deps.unwritten.pop(key, None)
            self.deps.deferred.discard(key)
            self.queue.forget(key)
            if kind in ON_DELETE:
                ON_DELETE[kind](self.deps, body)
            asyncio.get_running_loop().create_task(self._delete_pods_of(meta.get("uid", "")))
            return
        known = self.deps.resources.get(key)
        if known is not None and _is_older(body, known):
            return  # a write of ours already brought a newer version (Deps.remember)
        self.deps.resources[key] = body
        self.queue.add(key)

    def _on_cache_change(self, kind: str, old: Any, new: Any) -> None:
        if kind == "pod":
            pod: PodRecord = new or old
            if pod.is_operator_pod:
                owner_kind = pod.labels.get(LABEL_OWNER_KIND, "")
                owner = pod.labels.get(LABEL_OWNER_NAME, "")
                if owner_kind and owner:
                    self.queue.add((owner_kind, pod.namespace, owner))
            if old is not None and old.holds_resources and not (new and new.holds_resources):
                self._wake_waiting()
        elif kind == "node":
            was = _node_signature(old)
            now = _node_signature(new)
            if was != now:
                self._wake_all_active()
            if was is not None and now is not None and (was[0] == "True") != (now[0] == "True"):
                name = new["metadata"]["name"]
                if now[0] == "True":
                    log.info("node %s recovered: Ready again", name)
                else:
                    log.warning("node %s is NotReady: its jobs are retried elsewhere", name)

    def _wake_waiting(self) -> None:
        for key, body in self.deps.resources.items():
            status = body.get("status") or {}
            if status.get("phase", "Pending") == "Pending":
                self.queue.add(key)

    def _wake_all_active(self) -> None:
        for key, body in self.deps.resources.items():
            if (body.get("status") or {}).get("phase") not in TERMINAL:
                self.queue.add(key)

    # ---- work --------------------------------------------------------------------------------
    def _priority(self, key: Key) -> int:
        """0 for a SelfplayJob whose current attempt has no pod yet (waiting for a node), 1 for
        everything else: placements go first, the status writes that follow them after."""
        kind, namespace, name = key
        if kind != SELFPLAYJOB or key in self.deps.unwritten:
            return 1
        body = self.deps.resources.get(key)
        if body is None:
            return 1
        status = body.get("status") or {}
        if status.get("phase") in TERMINAL or (body.get("spec") or {}).get("suspend"):
            return 1
        attempt = max(1, int(status.get("attempts") or 0))
        pod = pod_name(owner=name, kind=JobKind.SELFPLAY, attempt=attempt)
        return 1 if self.deps.cache.pod(namespace, pod) is not None else 0

    async def _reconcile(self, key: Key) -> float | None:
        body = self.deps.resources.get(key)
        reconciler = RECONCILERS.get(key[0])
        if body is None or reconciler is None:
            return None
        self.reconciles += 1
        return await reconciler(self.deps, body)

    BACKLOG_QUIET_SECONDS = 1.0

    def _placements_backlogged(self) -> bool:
        """Whether SelfplayJobs wait for a worker to place them, or did in the last second."""
        now = time.monotonic()
        if self.queue.queued_with(0):
            self._backlog_at = now
            return True
        return now - self._backlog_at < self.BACKLOG_QUIET_SECONDS

    async def _release_deferred(self) -> None:
        """Queue the status writes deferred behind placements once the backlog has cleared."""
        deps = self.deps
        while True:
            await asyncio.sleep(0.25)
            if deps.deferred and not self._placements_backlogged():
                keys, deps.deferred = deps.deferred, set()
                for key in keys:
                    self.queue.add(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.deps.settings.resync_seconds)
            self.deps.cache.expire_reservations(now=time.monotonic())
            for key in list(self.deps.resources):
                self.queue.add(key)

    async def _flush_history(self, history: HistoryStore) -> None:
        while True:
            await asyncio.sleep(1.0)
            if history.pending:
                try:
                    await history.flush()
                except Exception:
                    log.exception("writing history failed; continuing without those rows")

    async def _delete_pods_of(self, uid: str) -> None:
        for pod in self.deps.cache.pods_of(uid):
            try:
                await self.deps.client.delete(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}")
            except Exception as e:
                log.warning("deleting pod %s/%s failed: %s", pod.namespace, pod.name, e)


def _is_older(body: dict[str, Any], known: dict[str, Any]) -> bool:
    """Whether ``body`` is an older version of the same object than ``known``."""
    a, b = body.get("metadata") or {}, known.get("metadata") or {}
    if a.get("uid") != b.get("uid"):
        return False
    try:
        return int(str(a.get("resourceVersion"))) < int(str(b.get("resourceVersion")))
    except (TypeError, ValueError):
        return False


def _node_signature(node: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if node is None:
        return None
    status = node.get("status") or {}
    ready = next(
        (c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    spec = node.get("spec") or {}
    return (
        ready,
        tuple(sorted((status.get("allocatable") or {}).items())),
        bool(spec.get("unschedulable")),
        tuple((t.get("key"), t.get("effect")) for t in spec.get("taints") or []),
        tuple(sorted((node.get("metadata") or {}).get("labels", {}).items())),
    )


async def _open_history(settings: OperatorSettings) -> HistoryStore | None:
    """The history store, or None when it cannot be opened: history is lost, work never is."""
    try:
        return await HistoryStore.open(settings.history_path)
    except Exception:
        log.exception("history store %s unavailable; running without history",
                      settings.history_path)  # fmt: skip
        return None
