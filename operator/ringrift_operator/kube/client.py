"""A small asyncio client for the Kubernetes API, on aiohttp.

The operator's only door to the API server besides kopf's own watches: get/list/watch/create/
patch/delete, the pod binding subresource and Events. Credentials come from a kubeconfig or the
in-cluster service account, loaded with the ``kubernetes`` package's loaders (token, client
certificates, CA). Every request is counted by verb and resource for the metrics and the
benchmarks (API writes per placed job).
"""

from __future__ import annotations

import json
import logging
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WATCH_STALL_SECONDS = 90.0
"""A watch that delivers nothing (no event, no bookmark) this long is stalled and restarted."""
CONNECT_SECONDS = 10.0


def watch_server_timeout(stall_seconds: float) -> int:
    """``timeoutSeconds`` for watch requests: well inside the stall bound. kube-apiserver sends
    bookmarks to quiet watches only about every one to two minutes (measured: 60 s, 120 s), so
    a healthy quiet watch must end server-side — and be resumed from its resourceVersion —
    before it could be mistaken for a stalled one."""
    return max(1, min(60, int(stall_seconds * 2 / 3)))


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the API server is and how to prove who we are."""

    server: str
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def load_credentials(kubeconfig: str | None = None, *, context: str | None = None) -> Credentials:
    """Credentials from a kubeconfig (``kubeconfig`` or $KUBECONFIG), else in-cluster."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=cfg
        )
    except k8s_config.ConfigException:
        if kubeconfig:
            raise
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    token = None
    auth = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    if auth:
        token = auth.removeprefix("Bearer ").strip()
    return Credentials(
        server=cfg.host.rstrip("/"),
        token=token,
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        verify=cfg.verify_ssl,
    )


@dataclass
class RequestStats:
    """Requests sent, by (verb, resource)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, verb: str, path: str) -> None:
        self.counts[(verb, resource_of(path))] += 1

    @property
    def writes(self) -> int:
        return sum(n for (verb, _), n in self.counts.items() if verb in WRITE_VERBS)


def resource_of(path: str) -> str:
    """``/api/v1/namespaces/x/pods/y/binding`` → ``pods/binding``; for metrics labels."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[:1] == ["api"]:
        parts = parts[2:]
    elif parts[:1] == ["apis"]:
        parts = parts[3:]
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    if not parts:
        return ""
    resource = parts[0]
    return f"{resource}/{parts[2]}" if len(parts) > 2 else resource


class KubeClient:
    """One aiohttp session to one API server. Create with :meth:`connect`; close with
    :meth:`close` (or ``async with``)."""

    def __init__(
        self,
        credentials: Credentials,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.credentials = credentials
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.stats = RequestStats()
        self.write_guard: Callable[[], None] | None = None
        """Called before every guarded write; raises to refuse it (leader election's fence)."""

    @classmethod
    async def connect(
        cls,
        credentials: Credentials,
        *,
        request_timeout: float = 30.0,
        max_connections: int = 64,
        identity: str = "",
    ) -> KubeClient:
        # The API server names the field manager after the part before "/", the same for every
        # replica; the rest identifies the replica in audit logs.
        agent = f"ringrift-operator/{identity}" if identity else "ringrift-operator"
        headers = {"Accept": "application/json", "User-Agent": agent}
        if credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        connector = aiohttp.TCPConnector(ssl=credentials.ssl_context(), limit=max_connections)
        session = aiohttp.ClientSession(headers=headers, connector=connector)
        return cls(credentials, session, timeout=request_timeout)

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- plain requests ----------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        request_timeout: float | None = None,
        guarded: bool = True,
    ) -> Any:
        if guarded and method in WRITE_VERBS and self.write_guard is not None:
            self.write_guard()
        self.stats.record(method, path)
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        to = (
            self._timeout
            if request_timeout is None
            else aiohttp.ClientTimeout(total=request_timeout)
        )
        async with self._session.request(
            method,
            self.credentials.server + path,
            data=data,
            params=params,
            headers=headers,
            timeout=to,
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise _error(resp.status, raw)
            if not raw:
                return None
            return json.loads(raw)

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> JsonDict:
        result: JsonDict = await self.request("GET", path, params=params)
        return result

    async def create(self, path: str, body: JsonDict) -> JsonDict:
        result: JsonDict = await self.request("POST", path, body=body)
        return result

    async def patch(self, path: str, body: Any, *, content_type: str = MERGE_PATCH) -> JsonDict:
        result: JsonDict = await self.request("PATCH", path, body=body, content_type=content_type)
        return result

    async def delete(
        self, path: str, *, grace_seconds: int | None = None, propagation: str | None = None
    ) -> None:
        body: JsonDict = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        if propagation:
            body["propagationPolicy"] = propagation
        try:
            await self.request("DELETE", path, body=body)
        except ApiError as e:
            if not e.not_found:
                raise

    async def list_all(self, path: str, *, params: Mapping[str, str] | None = None) -> JsonDict:
        """A paginated list, joined; returns ``{"items": [...], "metadata": {...}}``."""
        query = dict(params or {})
        query.setdefault("limit", "500")
        items: list[JsonDict] = []
        while True:
            page = await self.get(path, params=query)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return {"items": items, "metadata": page.get("metadata") or {}}
            query["continue"] = cont

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        timeout_seconds: int | None = None,
        stall_seconds: float = WATCH_STALL_SECONDS,
    ) -> AsyncIterator[JsonDict]:
        """Watch events from ``resource_version``: dicts with ``type`` and ``object``. Ends when
        the server closes the stream (after ``timeout_seconds``, by default
        :func:`watch_server_timeout` of ``stall_seconds``); raises
        ApiError(410) when the version is too old, and TimeoutError when the connection cannot
        be made in ``CONNECT_SECONDS`` or nothing at all arrives for ``stall_seconds``."""
        if timeout_seconds is None:
            timeout_seconds = watch_server_timeout(stall_seconds)
        query = {
            **(params or {}),
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        self.stats.record("WATCH", path)
        # The read timeout catches a silently stalled stream: the server sends bookmarks about
        # every minute, so nothing for longer than that means the stream (or its peer) is dead.
        timeout = aiohttp.ClientTimeout(
            total=timeout_seconds + stall_seconds, sock_connect=CONNECT_SECONDS,
            sock_read=stall_seconds,
        )  # fmt: skip
        async with self._session.get(
            self.credentials.server + path, params=query, timeout=timeout
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.read())
            async for line in resp.content:
                if not line.strip():
                    continue
                event: JsonDict = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(
                        int(status.get("code") or 500),
                        str(status.get("reason") or "Error"),
                        str(status.get("message") or ""),
                        status,
                    )
                yield event

    # ---- specific calls ----------------------------------------------------------------------
    async def bind_pod(self, *, namespace: str, pod: str, node: str) -> None:
        """Assign a pod to a node through the binding subresource (what a scheduler does)."""
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{pod}/binding", body=body)


def _error(status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        return ApiError(status, "Unknown", raw.decode(errors="replace")[:500])
    if not isinstance(body, dict):
        return ApiError(status, "Unknown", str(body)[:500])
    return ApiError(status, str(body.get("reason") or ""), str(body.get("message") or ""), body)
