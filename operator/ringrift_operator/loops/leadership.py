"""The leader elector: nothing is reconciled before the Lease is held, and a replica that lost or
cannot renew it stops acting at once.

:meth:`LeaderElector.acquire` waits (standby) until this replica holds the Lease; then
:meth:`run` renews it every ``renew_interval``. Every API write goes through
:meth:`write_allowed` (installed as the client's write guard): once the last successful renewal
is older than the lease duration minus a margin — the process was paused, the API server was
unreachable, another replica took over — writes are refused and ``on_lost`` ends the process,
for Kubernetes to restart it as a standby.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from ringrift_operator.kube.client import ApiError, KubeClient
from ringrift_operator.managers.leadership import (
    LeaseAction,
    decide_lease,
    holds_leadership,
    lease_view,
)

log = logging.getLogger(__name__)
LEASE_API = "/apis/coordination.k8s.io/v1"


class LeadershipLost(RuntimeError):
    """This replica is no longer (certainly) the leader; it must not write."""


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        clock: Callable[[], datetime],
        duration_seconds: int = 15,
        renew_interval: float = 3.0,
        margin_seconds: float = 3.0,
        on_lost: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.clock = clock
        self.duration_seconds = duration_seconds
        self.renew_interval = renew_interval
        self.margin_seconds = margin_seconds
        self.on_lost = on_lost
        self.monotonic = monotonic
        self.epoch = 0
        self.leader = ""  # identity of the current holder, as last seen
        self.role = "standby"
        self._last_renewed: float | None = None
        self._held: dict[str, object] | None = None  # the Lease as we last wrote it
        self._lost = False

    @property
    def path(self) -> str:
        return f"{LEASE_API}/namespaces/{self.namespace}/leases/{self.name}"

    def is_leader(self) -> bool:
        return not self._lost and holds_leadership(
            last_renewed=self._last_renewed, now=self.monotonic(),
            duration_seconds=self.duration_seconds, margin_seconds=self.margin_seconds,
        )  # fmt: skip

    def write_allowed(self) -> None:
        """The client's write guard: raise instead of writing without the lease."""
        if not self.is_leader():
            self._lose("lease not held or not renewed in time; refusing to write")
            raise LeadershipLost(f"{self.identity} does not hold lease {self.name}")

    async def _try_once(self) -> bool:
        """One round: read, decide, write. True when we hold the lease afterwards."""
        started = self.monotonic()
        current = self._held if self.role == "leader" else None
        cached = current is not None
        if current is None:
            try:
                current = await self.client.get(self.path)
            except ApiError as e:
                if not e.not_found:
                    raise
                current = None
        # else: renewing the Lease as we last wrote it — one request, not two, on an API server
        # that may be slow to answer either (a change by anybody else makes the PUT a 409).
        view = lease_view(current)
        decision = decide_lease(
            view, identity=self.identity, duration_seconds=self.duration_seconds,
            now=self.clock(),
        )  # fmt: skip
        self.leader = view.holder if view else ""
        if decision.action is LeaseAction.STANDBY:
            return False
        metadata: dict[str, str] = {"name": self.name, "namespace": self.namespace}
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": decision.body,
        }
        if decision.action is LeaseAction.CREATE:
            written = await self.client.request(
                "POST", f"{LEASE_API}/namespaces/{self.namespace}/leases", body=body,
                guarded=False,
            )  # fmt: skip
        else:
            # resourceVersion makes this a compare-and-swap: of two replicas taking over at
            # once, one gets 409 Conflict and stays a standby.
            assert view is not None
            metadata["resourceVersion"] = view.resource_version
            self._held = None  # until this write is known to have landed
            try:
                written = await self.client.request("PUT", self.path, body=body, guarded=False)
            except ApiError as e:
                if e.conflict and cached:
                    # Our copy was stale (an earlier PUT that timed out had landed?): decide
                    # again from the Lease as it is.
                    return await self._try_once()
                raise
        self._held = written if isinstance(written, dict) else None
        # Count the lease from when we asked, not from when the answer came back.
        self._last_renewed = started
        if decision.action is not LeaseAction.RENEW:
            log.info("acquired lease %s/%s as %s (epoch %d)", self.namespace, self.name,
                     self.identity, decision.epoch)  # fmt: skip
        self.epoch = decision.epoch
        self.leader = self.identity
        self.role = "leader"
        return True

    async def acquire(self) -> None:
        """Wait until this replica holds the lease."""
        while True:
            try:
                if await self._try_once():
                    return
            except ApiError as e:
                if not e.conflict:
                    log.warning("lease %s: %s", self.name, e)
            except (OSError, TimeoutError) as e:
                log.warning("lease %s: %s", self.name, e)
            await asyncio.sleep(self.renew_interval)

    async def run(self) -> None:
        """Keep renewing; on losing the lease, stop (``on_lost``)."""
        delay = self.renew_interval
        while not self._lost:
            await asyncio.sleep(delay)
            # After a failed renewal, try again soon: the lease may still be saved.
            delay, retry = self.renew_interval, min(1.0, self.renew_interval)
            if not self.is_leader():
                self._lose("the lease was not renewed in time")
                return
            try:
                if not await self._try_once():
                    self._lose(f"lease taken over by {self.leader}")
                    return
            except ApiError as e:
                log.warning("renewing lease %s failed: %s", self.name, e)
                if e.conflict:
                    self._lose("lease changed under us")
                    return
                delay = retry
            except (OSError, TimeoutError) as e:
                log.warning("renewing lease %s failed: %r", self.name, e)
                delay = retry

    async def release(self) -> None:
        """On a clean shutdown: hand the lease back so a standby takes over at once."""
        if not self.is_leader():
            return
        self._lost = True
        self.role = "released"
        try:
            current = await self.client.get(self.path)
            spec = dict(current.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec["holderIdentity"] = ""
            body = {**current, "spec": spec}
            await self.client.request("PUT", self.path, body=body, guarded=False)
            log.info("released lease %s/%s", self.namespace, self.name)
        except (ApiError, OSError, TimeoutError) as e:
            log.warning("releasing lease %s failed: %s", self.name, e)

    def _lose(self, why: str) -> None:
        if self._lost:
            return
        self._lost = True
        self.role = "lost"
        log.error("leadership lost (%s): stopping", why)
        if self.on_lost is not None:
            self.on_lost(why)
