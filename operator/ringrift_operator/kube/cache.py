"""The operator's view of the cluster: Nodes and Pods kept current by list+watch reflectors, and
the GPU/CPU/memory each node has committed — including reservations the operator made a moment
ago and the watch has not shown yet, so that a burst of placements never over-commits a node.

Used by the reconcilers (a snapshot to rank, a pod to follow) and the loops (idle GPUs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from ringrift_operator.api.common import LABEL_MANAGED_BY, OPERATOR_NAME
from ringrift_operator.kube.client import (
    WATCH_STALL_SECONDS,
    ApiError,
    KubeClient,
    watch_server_timeout,
)
from ringrift_operator.kube.snapshots import PodRecord, node_info, pod_record
from ringrift_operator.managers.nodes import NodeInfo

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
PodKey = tuple[str, str]
Listener = Callable[[str, Any, Any], None]  # (event type, old, new)


@dataclass(frozen=True, slots=True)
class Usage:
    gpus: int = 0
    cpu_millis: int = 0
    memory_bytes: int = 0
    jobs: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.gpus + other.gpus,
            self.cpu_millis + other.cpu_millis,
            self.memory_bytes + other.memory_bytes,
            self.jobs + other.jobs,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.gpus - other.gpus,
            self.cpu_millis - other.cpu_millis,
            self.memory_bytes - other.memory_bytes,
            self.jobs - other.jobs,
        )


ZERO = Usage()


def _usage(pod: PodRecord) -> Usage:
    if not pod.holds_resources:
        return ZERO
    return Usage(pod.gpus, pod.cpu_millis, pod.memory_bytes, 1 if pod.is_operator_pod else 0)


@dataclass(frozen=True, slots=True)
class Reservation:
    node: str
    usage: Usage
    made_at: float


class ClusterCache:
    """Nodes and pods by name, per-node usage, and the operator's pending reservations."""

    RESERVATION_TTL = 60.0  # a reservation the watch never confirmed is dropped after this

    def __init__(self) -> None:
        self.nodes: dict[str, JsonDict] = {}
        self._node_infos: dict[str, NodeInfo] = {}  # as the Node object says (nothing in use)
        # Each node with its committed usage, rebuilt only for the nodes in _stale: a decision
        # reads every node, but between two decisions only a few nodes change.
        self._effective: dict[str, NodeInfo] = {}
        self._stale: set[str] = set()
        self.pods: dict[PodKey, PodRecord] = {}
        self._used: dict[str, Usage] = defaultdict(Usage)
        self._reservations: dict[PodKey, Reservation] = {}
        self._reserved: dict[str, Usage] = defaultdict(Usage)
        self._by_owner: dict[str, set[PodKey]] = defaultdict(set)
        self.listeners: list[Listener] = []
        # node -> times (monotonic) of failed attempts there; counted over reputation_window.
        self.failures: dict[str, list[float]] = defaultdict(list)
        self.reputation_window = 3600.0
        self.synced = asyncio.Event()
        self._synced_kinds: set[str] = set()
        # kind -> health of the reflector that keeps it current (restarts, stalls, quiet time)
        self.watches: dict[str, Callable[[], dict[str, Any]]] = {}

    # ---- updates from watches ----------------------------------------------------------------
    def upsert_node(self, obj: JsonDict) -> None:
        name = obj["metadata"]["name"]
        old = self.nodes.get(name)
        self.nodes[name] = obj
        self._node_infos[name] = node_info(obj)
        self._stale.add(name)
        self._notify("node", old, obj)

    def delete_node(self, name: str) -> None:
        old = self.nodes.pop(name, None)
        self._node_infos.pop(name, None)
        self._effective.pop(name, None)
        self._stale.discard(name)
        if old is not None:
            self._notify("node", old, None)

    def upsert_pod(self, obj: JsonDict) -> None:
        new = pod_record(obj)
        old = self.pods.get(new.key)
        if old is not None and old.uid != new.uid:
            self._forget_pod(old)
            old = None
        if old is not None:
            self._used[old.node] -= _usage(old)
            self._stale.add(old.node)
        self.pods[new.key] = new
        self._used[new.node] += _usage(new)
        self._stale.add(new.node)
        if new.owner_uid:
            self._by_owner[new.owner_uid].add(new.key)
        if new.node or new.terminal or new.deleting:
            self._release(new.key)
        self._notify("pod", old, new)

    def delete_pod(self, key: PodKey) -> None:
        old = self.pods.get(key)
        if old is not None:
            self._forget_pod(old)
        self._release(key)
        if old is not None:
            self._notify("pod", old, None)

    def _forget_pod(self, old: PodRecord) -> None:
        self.pods.pop(old.key, None)
        self._used[old.node] -= _usage(old)
        self._stale.add(old.node)
        if old.owner_uid:
            keys = self._by_owner.get(old.owner_uid)
            if keys is not None:
                keys.discard(old.key)
                if not keys:
                    del self._by_owner[old.owner_uid]

    def _notify(self, kind: str, old: Any, new: Any) -> None:
        for listener in self.listeners:
            try:
                listener(kind, old, new)
            except Exception:  # a listener must never break the cache
                log.exception("cache listener failed")

    # ---- reservations ------------------------------------------------------------------------
    def reserve(self, key: PodKey, *, node: str, gpus: int, cpu_millis: int, memory_bytes: int,
                now: float) -> None:  # fmt: skip
        """Count a pod against ``node`` now, before the watch shows it bound."""
        self._release(key)
        usage = Usage(gpus, cpu_millis, memory_bytes, 1)
        self._reservations[key] = Reservation(node=node, usage=usage, made_at=now)
        self._reserved[node] += usage
        self._stale.add(node)

    def _release(self, key: PodKey) -> None:
        res = self._reservations.pop(key, None)
        if res is not None:
            self._reserved[res.node] -= res.usage
            self._stale.add(res.node)

    def release(self, key: PodKey) -> None:
        self._release(key)

    def expire_reservations(self, *, now: float) -> int:
        stale = [k for k, r in self._reservations.items() if now - r.made_at > self.RESERVATION_TTL]
        for key in stale:
            self._release(key)
        return len(stale)

    # ---- reads -------------------------------------------------------------------------------
    def node_infos(self, *, exclude: Iterable[str] = ()) -> list[NodeInfo]:
        """Every node with its committed usage (bound pods plus reservations) and recent
        failures. Only the nodes whose usage changed since the last call are rebuilt (and those
        with failures, which age out with time)."""
        for name in self._stale | self.failures.keys():
            base = self._node_infos.get(name)
            if base is not None:
                self._effective[name] = self._with_usage(name, base)
        self._stale.clear()
        skip = set(exclude)
        if not skip:
            return list(self._effective.values())
        return [info for name, info in self._effective.items() if name not in skip]

    def _with_usage(self, name: str, base: NodeInfo) -> NodeInfo:
        used = self._used.get(name, ZERO) + self._reserved.get(name, ZERO)
        failures = self.recent_failures(name)
        if used == ZERO and not failures:
            return base
        return replace(
            base,
            gpu_in_use=used.gpus,
            cpu_in_use_millis=used.cpu_millis,
            memory_in_use_bytes=used.memory_bytes,
            running_jobs=used.jobs,
            recent_failures=failures,
        )

    def record_failure(self, node: str, *, at: float | None = None) -> None:
        """A failed attempt on ``node`` (HOST_OFFLINE or a failed pod): its reputation drops
        for ``reputation_window`` seconds."""
        self.failures[node].append(time.monotonic() if at is None else at)

    def forgive(self, node: str, count: int) -> int:
        """Take back up to ``count`` of the newest failures on ``node`` (a node that came back
        after going offline); the number taken back."""
        times = self.failures.get(node)
        if not times or count <= 0:
            return 0
        taken = min(count, len(times))
        del times[-taken:]
        return taken

    def recent_failures(self, node: str) -> int:
        times = self.failures.get(node)
        if not times:
            return 0
        horizon = time.monotonic() - self.reputation_window
        if times[0] < horizon:
            times[:] = [t for t in times if t >= horizon]
        return len(times)

    def failures_by_node(self) -> dict[str, int]:
        """Nodes with failed attempts in the reputation window, and how many."""
        counts = {node: self.recent_failures(node) for node in list(self.failures)}
        return {node: n for node, n in sorted(counts.items()) if n}

    def not_ready_nodes(self) -> list[str]:
        return sorted(name for name, info in self._node_infos.items() if not info.ready)

    def node_ready(self, name: str) -> bool | None:
        """True/False for a known node; None when the node does not exist."""
        info = self._node_infos.get(name)
        return None if info is None else info.ready

    def pods_of(self, owner_uid: str) -> list[PodRecord]:
        return [self.pods[k] for k in self._by_owner.get(owner_uid, ()) if k in self.pods]

    def pod(self, namespace: str, name: str) -> PodRecord | None:
        return self.pods.get((namespace, name))

    def gpu_totals(self) -> tuple[int, int]:
        """(allocatable GPUs on Ready nodes, GPUs committed on them)."""
        total = used = 0
        for name, info in self._node_infos.items():
            if info.ready:
                total += info.gpu_allocatable
                used += min(info.gpu_allocatable, (self._used.get(name, ZERO)).gpus)
        return total, used

    def mark_synced(self, kind: str) -> None:
        self._synced_kinds.add(kind)
        if {"nodes", "operator-pods", "other-pods"} <= self._synced_kinds:
            self.synced.set()


class WatchStalled(TimeoutError):
    """A watch delivered nothing — no event, no bookmark — for longer than its bound."""


class Reflector:
    """List, then watch from the list's resourceVersion; relist on 410 Gone or any stream error,
    with backoff. A watch that delivers nothing (no event, no bookmark) for ``stall_seconds``
    is treated as stalled and restarted — whatever the transport believes — so a watch can
    never silently stop delivering. Watches end server-side well before that (``timeoutSeconds``
    from :func:`watch_server_timeout`) and are resumed from their resourceVersion, so a healthy
    quiet watch is never taken for a stalled one."""

    def __init__(
        self,
        client: KubeClient,
        *,
        path: str,
        kind: str,
        on_upsert: Callable[[JsonDict], None],
        on_delete: Callable[[JsonDict], None],
        on_relist: Callable[[list[JsonDict]], None],
        params: dict[str, str] | None = None,
        on_synced: Callable[[], None] | None = None,
        stall_seconds: float = WATCH_STALL_SECONDS,
    ) -> None:
        self.client = client
        self.path = path
        self.kind = kind
        self.params = params or {}
        self.on_upsert = on_upsert
        self.on_delete = on_delete
        self.on_relist = on_relist
        self.on_synced = on_synced
        self.watch_timeout = watch_server_timeout(stall_seconds)
        self.stall_seconds = stall_seconds
        self.restarts = 0  # watches that ended in an error or a stall (then relisted)
        self.stalls = 0  # of which: stalled
        self.last_event_at = 0.0  # monotonic; bookmarks count

    def health(self) -> dict[str, Any]:
        quiet = time.monotonic() - self.last_event_at if self.last_event_at else None
        return {"restarts": self.restarts, "stalls": self.stalls,
                "seconds_since_event": None if quiet is None else round(quiet, 1)}  # fmt: skip

    async def _watch(self, rv: str) -> str:
        """One watch request from ``rv``, until the server ends it; returns the last version
        seen. Raises WatchStalled when nothing arrives for ``stall_seconds``."""
        stream = self.client.watch(
            self.path, resource_version=rv, params=self.params,
            timeout_seconds=self.watch_timeout, stall_seconds=self.stall_seconds + 5,
        )  # fmt: skip
        iterator = aiter(stream)
        try:
            while True:
                try:
                    async with asyncio.timeout(self.stall_seconds):
                        event = await anext(iterator)
                except StopAsyncIteration:
                    return rv
                except TimeoutError as e:
                    raise WatchStalled(
                        f"nothing received for {self.stall_seconds:.0f}s (no event, no bookmark)"
                    ) from e
                self.last_event_at = time.monotonic()
                obj = event.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                kind = event.get("type")
                if kind in ("ADDED", "MODIFIED"):
                    self.on_upsert(obj)
                elif kind == "DELETED":
                    self.on_delete(obj)
        finally:
            closing = getattr(iterator, "aclose", None)
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing()

    async def run(self, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        delay = 0.5
        while True:
            try:
                listing = await self.client.list_all(self.path, params=self.params)
                self.on_relist(listing["items"])
                if self.on_synced:
                    self.on_synced()
                rv = listing["metadata"].get("resourceVersion", "")
                self.last_event_at = time.monotonic()
                delay = 0.5
                while True:
                    rv = await self._watch(rv)
            except asyncio.CancelledError:
                raise
            except WatchStalled as e:
                self.stalls += 1
                log.warning("%s watch stalled: %s; restarting it", self.kind, e)
            except ApiError as e:
                if not e.gone:
                    log.warning("%s watch failed: %s; relisting in %.1fs", self.kind, e, delay)
            except Exception as e:
                log.warning("%s watch broke: %r; relisting in %.1fs", self.kind, e, delay)
            self.restarts += 1
            await sleep(delay)
            delay = min(delay * 2, 10.0)


def start_cache_reflectors(
    client: KubeClient, cache: ClusterCache, *, stall_seconds: float = WATCH_STALL_SECONDS
) -> list[asyncio.Task[None]]:
    """Start the node and pod reflectors that keep ``cache`` current."""

    def relist_nodes(items: list[JsonDict]) -> None:
        names = {n["metadata"]["name"] for n in items}
        for gone in set(cache.nodes) - names:
            cache.delete_node(gone)
        for n in items:
            cache.upsert_node(n)

    def relister(ours: bool) -> Callable[[list[JsonDict]], None]:
        def relist_pods(items: list[JsonDict]) -> None:
            keys = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in items}
            for key, pod in list(cache.pods.items()):
                if pod.is_operator_pod == ours and key not in keys:
                    cache.delete_pod(key)
            for p in items:
                cache.upsert_pod(p)

        return relist_pods

    nodes = Reflector(
        client,
        path="/api/v1/nodes",
        kind="nodes",
        stall_seconds=stall_seconds,
        on_upsert=cache.upsert_node,
        on_delete=lambda o: cache.delete_node(o["metadata"]["name"]),
        on_relist=relist_nodes,
        on_synced=lambda: cache.mark_synced("nodes"),
    )

    def delete(o: JsonDict) -> None:
        cache.delete_pod((o["metadata"]["namespace"], o["metadata"]["name"]))

    managed = f"{LABEL_MANAGED_BY}={OPERATOR_NAME}"
    # The operator's own pods, in every phase: how an attempt ended is read from them.
    ours = Reflector(
        client,
        path="/api/v1/pods",
        kind="operator-pods",
        stall_seconds=stall_seconds,
        params={"labelSelector": managed},
        on_upsert=cache.upsert_pod,
        on_delete=delete,
        on_relist=relister(True),
        on_synced=lambda: cache.mark_synced("operator-pods"),
    )
    # Everybody else's pods only while they hold node resources (not finished).
    others = Reflector(
        client,
        path="/api/v1/pods",
        kind="other-pods",
        stall_seconds=stall_seconds,
        params={
            "labelSelector": f"{LABEL_MANAGED_BY}!={OPERATOR_NAME}",
            "fieldSelector": "status.phase!=Succeeded,status.phase!=Failed",
        },
        on_upsert=cache.upsert_pod,
        on_delete=delete,
        on_relist=relister(False),
        on_synced=lambda: cache.mark_synced("other-pods"),
    )
    reflectors = (nodes, ours, others)
    for r in reflectors:
        cache.watches[r.kind] = r.health
    return [asyncio.create_task(r.run(), name=f"reflector-{r.kind}") for r in reflectors]


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
