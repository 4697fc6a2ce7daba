"""Manifest collection: find the node agents, fetch their manifests, keep the latest of each.

The agents advertise themselves on their Node (annotation ``ringrift.ai/agent-endpoint``);
:func:`agent_endpoints` reads those from the cluster cache. :class:`ManifestStore` (one, in
``Deps.manifests``) fetches manifests concurrently, each with a 30 s timeout: a peer that fails
is recorded with its error and skipped, never failing the collection. It keeps the last good
manifest of every node (stamped with the operator's clock when it arrived), shares a fetch in
flight between callers, and serves the cluster :meth:`ManifestStore.inventory` that the
TrainingRun reconciler reads. Only game files (``games/``) are kept.

Users: the SyncPlan rounds (``reconcilers.syncrounds``), the TrainingRun reconciler (inventory),
the metrics collector (manifest ages and errors).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ringrift_operator.agent.auth import TokenError, load_token
from ringrift_operator.agent.client import AgentClient, AgentError
from ringrift_operator.api.common import ANNOTATION_AGENT_ENDPOINT
from ringrift_operator.api.contract import GAMES_SUBDIR
from ringrift_operator.managers.inventory import ConfigInventory, Inventory, build_inventory
from ringrift_operator.managers.syncplanning import (
    DEFAULT_MANIFEST_MAX_AGE_SECONDS,
    Manifest,
    manifest_age,
)

log = logging.getLogger(__name__)

MANIFEST_TIMEOUT_SECONDS = 30.0  # the seed's per-peer collection timeout
_GAMES_PREFIX = f"{GAMES_SUBDIR}/"


def agent_endpoints(
    nodes: Mapping[str, Mapping[str, Any]], *, ready_only: bool = True
) -> dict[str, str]:
    """node -> agent base URL, from the endpoint annotation of every (Ready) Node."""
    endpoints = {}
    for name, node in nodes.items():
        url = ((node.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_AGENT_ENDPOINT)
        if url and (not ready_only or _is_ready(node)):
            endpoints[name] = str(url).rstrip("/")
    return endpoints


def _is_ready(node: Mapping[str, Any]) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


@dataclass(frozen=True, slots=True)
class ManifestCollection:
    """The answer to one :meth:`ManifestStore.collect`."""

    manifests: Mapping[
        str, Manifest
    ]  # node -> its manifest (fresh enough), for nodes that answered
    errors: Mapping[str, str]  # node -> why it did not

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({*self.manifests, *self.errors}))


@dataclass
class _Entry:
    url: str
    manifest: Manifest


@dataclass
class ManifestStore:
    """The latest manifest of every node agent; see the module doc.

    ``token_file`` is read when first needed (a missing token is an error of every fetch, not of
    startup); ``clock`` gives seconds since the epoch. The HTTP session is made on first use in
    the running event loop and closed by :meth:`close`.
    """

    token_file: Path | None = None
    token: str | None = field(default=None, repr=False)  # never in logs
    clock: Callable[[], float] = time.time
    timeout: float = MANIFEST_TIMEOUT_SECONDS
    on_error: Callable[[str, str], None] = lambda node, error: None  # metrics hook
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _errors: dict[str, tuple[float, str]] = field(default_factory=dict)  # node -> (at, error)
    _inflight: dict[str, tuple[float, str, asyncio.Task[Manifest]]] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    # ---- agents ------------------------------------------------------------------------------
    def client(self, url: str) -> AgentClient:
        """A client of the agent at ``url`` with the operator's token."""
        return AgentClient(base_url=url, token=self._token(), session=self._http())

    def _token(self) -> str:
        if self.token is None:
            self.token = load_token(token_file=self.token_file, env={})
        return self.token

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
            )
        return self._session

    async def close(self) -> None:
        for _, _, task in self._inflight.values():
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- collection --------------------------------------------------------------------------
    async def collect(
        self, endpoints: Mapping[str, str], *, fresher_than: float
    ) -> ManifestCollection:
        """The manifest of every node in ``endpoints`` collected at or after ``fresher_than``
        (seconds since the epoch): kept ones that are new enough, else fetched now, all at once.
        A node that fails is in ``errors`` with why; the others are unaffected."""
        nodes = list(endpoints)
        results = await asyncio.gather(
            *(self._manifest(n, endpoints[n], fresher_than) for n in nodes), return_exceptions=True
        )
        manifests: dict[str, Manifest] = {}
        errors: dict[str, str] = {}
        for node, result in zip(nodes, results, strict=True):
            if isinstance(result, Manifest):
                manifests[node] = result
            elif isinstance(result, asyncio.CancelledError):
                raise result
            else:
                errors[node] = _describe(result)
        return ManifestCollection(manifests=manifests, errors=errors)

    async def _manifest(self, node: str, url: str, fresher_than: float) -> Manifest:
        entry = self._entries.get(node)
        if entry is not None and entry.url == url and entry.manifest.collected_at >= fresher_than:
            return entry.manifest
        inflight = self._inflight.get(node)
        if inflight is None or inflight[0] < fresher_than or inflight[1] != url:
            task = asyncio.create_task(self._fetch(node, url), name=f"manifest-{node}")
            inflight = (self.clock(), url, task)
            self._inflight[node] = inflight
            task.add_done_callback(functools.partial(self._done, node))
        return await asyncio.shield(inflight[2])

    def _done(self, node: str, task: asyncio.Task[Manifest]) -> None:
        current = self._inflight.get(node)
        if current is not None and current[2] is task:
            del self._inflight[node]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have gone away

    async def _fetch(self, node: str, url: str) -> Manifest:
        started = self.clock()
        try:
            if not url:
                raise AgentError("no agent endpoint advertised on the Node", url="")
            fetched = await self.client(url).fetch_manifest(timeout=self.timeout)
            if fetched.node != node:
                raise AgentError(f"the agent at {url} serves node {fetched.node!r}", url=url)
        except (AgentError, TokenError, OSError, TimeoutError) as e:
            error = _describe(e)
            self._errors[node] = (self.clock(), error)
            self.on_error(node, error)
            log.info("manifest of %s (%s): %s", node, url, error)
            raise
        # Stamp it with our clock at the start of the fetch: the agent's clock may be skewed.
        games = {p: e for p, e in fetched.files.items() if p.startswith(_GAMES_PREFIX)}
        manifest = dataclasses.replace(fetched, files=games, collected_at=started)
        self._entries[node] = _Entry(url=url, manifest=manifest)
        self._errors.pop(node, None)
        return manifest

    def invalidate(self, nodes: Iterable[str]) -> None:
        """Forget the manifests of ``nodes`` (they changed: a pull landed there)."""
        for node in nodes:
            self._entries.pop(node, None)

    # ---- reads -------------------------------------------------------------------------------
    def latest(self, node: str) -> Manifest | None:
        """The last good manifest of ``node``, however old."""
        entry = self._entries.get(node)
        return entry.manifest if entry is not None else None

    def manifests(self, *, max_age: float = DEFAULT_MANIFEST_MAX_AGE_SECONDS) -> list[Manifest]:
        """Every kept manifest at most ``max_age`` seconds old."""
        now = self.clock()
        return [
            e.manifest
            for e in self._entries.values()
            if manifest_age(e.manifest, now=now) <= max_age
        ]

    def errors(self) -> dict[str, str]:
        """node -> the error of its last fetch, for nodes whose last fetch failed."""
        return {node: error for node, (_, error) in self._errors.items()}

    def ages(self) -> dict[str, float]:
        """node -> seconds since its kept manifest was collected."""
        now = self.clock()
        return {n: manifest_age(e.manifest, now=now) for n, e in self._entries.items()}

    def inventory(
        self,
        config: str,
        *,
        max_age: float = DEFAULT_MANIFEST_MAX_AGE_SECONDS,
    ) -> ConfigInventory:
        """Per-node game files, distinct files and data hash inputs of ``config`` over the kept
        manifests at most ``max_age`` seconds old (collect first for a fresher answer)."""
        return build_inventory(self.manifests(max_age=max_age), configs=[config]).of(config)

    def full_inventory(
        self,
        *,
        configs: Collection[str] | None = None,
        max_age: float = DEFAULT_MANIFEST_MAX_AGE_SECONDS,
    ) -> Inventory:
        return build_inventory(self.manifests(max_age=max_age), configs=configs)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__
