"""The operator's running core: the cluster cache and its reflectors, the work queue and its
workers, and the periodic resync, wired to the reconcilers.

Custom-resource watch events arrive from kopf (``handlers``) through :meth:`Controller.observe`;
pod and node changes from the cache's listeners; every key is also requeued every
``resync_seconds`` (level-based reconciliation: a missed event only delays, never loses work).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ringrift_operator.api.common import LABEL_OWNER_KIND, LABEL_OWNER_NAME
from ringrift_operator.api.selfplayjob import KIND as SELFPLAYJOB
from ringrift_operator.api.settings import OperatorSettings
from ringrift_operator.kube.cache import ClusterCache, start_cache_reflectors, stop_tasks
from ringrift_operator.kube.client import KubeClient, load_credentials
from ringrift_operator.kube.snapshots import PodRecord
from ringrift_operator.reconcilers.deps import Deps, workload_settings
from ringrift_operator.reconcilers.selfplayjob import reconcile_selfplayjob
from ringrift_operator.reconcilers.workqueue import WorkQueue, run_workers
from ringrift_operator.state.history import HistoryStore

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)
Reconciler = Callable[[Deps, dict[str, Any]], Awaitable[float | None]]

RECONCILERS: dict[str, Reconciler] = {SELFPLAYJOB: reconcile_selfplayjob}
TERMINAL = {"Complete", "Failed", "Expired", "Promoted", "Skipped"}


class Controller:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.queue: WorkQueue[Key] = WorkQueue()
        self.tasks: list[asyncio.Task[Any]] = []
        self.reconciles = 0
        deps.cache.listeners.append(self._on_cache_change)

    # ---- lifecycle ---------------------------------------------------------------------------
    @classmethod
    async def start(
        cls, settings: OperatorSettings, *, kubeconfig: str | None = None, identity: str = ""
    ) -> Controller:
        client = await KubeClient.connect(load_credentials(kubeconfig))
        cache = ClusterCache()
        history = await _open_history(settings)
        deps = Deps(
            client=client, cache=cache, settings=settings, workload=workload_settings(settings),
            history=history, identity=identity or "ringrift-operator",
        )  # fmt: skip
        self = cls(deps)
        self.tasks += start_cache_reflectors(client, cache)
        await asyncio.wait_for(cache.synced.wait(), timeout=120)
        self.tasks.append(
            asyncio.create_task(
                run_workers(self.queue, self._reconcile, workers=settings.workers), name="workers"
            )
        )
        self.tasks.append(asyncio.create_task(self._resync(), name="resync"))
        if history is not None:
            self.tasks.append(asyncio.create_task(self._flush_history(history), name="history"))
        log.info("controller started: %d nodes, %d pods cached", len(cache.nodes), len(cache.pods))
        return self

    async def stop(self) -> None:
        await stop_tasks(self.tasks)
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
            self.queue.forget(key)
            asyncio.get_running_loop().create_task(self._delete_pods_of(meta.get("uid", "")))
            return
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
    async def _reconcile(self, key: Key) -> float | None:
        body = self.deps.resources.get(key)
        reconciler = RECONCILERS.get(key[0])
        if body is None or reconciler is None:
            return None
        self.reconciles += 1
        return await reconciler(self.deps, body)

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
