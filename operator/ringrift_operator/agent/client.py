"""The agent's wire format and the HTTP clients that speak it.

- **Wire format**: JSON shapes of manifests, pull requests and pull reports, parsed strictly
  (:class:`WireError` names the offending field). Shared by the server and the clients.
- :class:`AgentClient`: how the operator (manifest collection, the SyncPlan reconciler) and an
  agent pulling from a peer talk to one agent. Failures are typed: :class:`AgentUnavailable`
  (cannot connect, timed out, 5xx), :class:`AgentAuthError` (401/403), :class:`AgentProtocolError`
  (any other refusal or an answer that is not the protocol).
- The agent's one call to the Kubernetes API: :func:`patch_node_annotations`, which advertises
  the agent's endpoint on its Node, with credentials from a kubeconfig (:func:`load_kubeconfig`)
  or the in-cluster service account (:func:`load_in_cluster`). Deliberately tiny: the agent does
  not load the ``kubernetes`` package.

Routes: ``GET /healthz``, ``GET /v1/manifest[?config=C]...``, ``GET /v1/files/<path>`` (with
``Range``), ``POST /v1/pull``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import re
import ssl
import tempfile
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import quote, urlsplit

import aiohttp
import yaml
from yarl import URL

from ringrift_operator.agent.auth import bearer_headers
from ringrift_operator.managers.syncplanning import FileEntry, Manifest

HEALTHZ_PATH = "/healthz"
MANIFEST_PATH = "/v1/manifest"
FILES_PATH = "/v1/files/"
PULL_PATH = "/v1/pull"
SHA256_HEADER = "X-Content-SHA256"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")

JsonDict = dict[str, Any]


# --- the wire format -----------------------------------------------------------------------------


MAX_FILE_SIZE = 2**63 - 1  # a file's size is an off_t; a bigger one is not a file


class WireError(ValueError):
    """A JSON document that is not the agent protocol; the message says which field is wrong."""


def entry_to_wire(entry: FileEntry) -> JsonDict:
    return {"path": entry.path, "size": entry.size, "mtime": entry.mtime, "sha256": entry.sha256}


def entry_from_wire(obj: Any, *, where: str = "file") -> FileEntry:
    """One ``{path, size, mtime, sha256}`` object; raises :class:`WireError`."""
    if not isinstance(obj, dict):
        raise WireError(f"{where}: expected an object")
    path, size, mtime, sha = obj.get("path"), obj.get("size"), obj.get("mtime"), obj.get("sha256")
    if not isinstance(path, str) or not path:
        raise WireError(f"{where}.path: expected a non-empty string")
    if not _is_int(size) or not 0 <= size <= MAX_FILE_SIZE:
        raise WireError(f"{where}.size: expected an integer from 0 to {MAX_FILE_SIZE}")
    if not _is_number(mtime) or not math.isfinite(mtime) or mtime < 0:
        raise WireError(f"{where}.mtime: expected non-negative seconds since the epoch")
    if not isinstance(sha, str) or not _SHA_RE.fullmatch(sha):
        raise WireError(f"{where}.sha256: expected 64 lowercase hex digits")
    return FileEntry(path=path, size=size, mtime=float(mtime), sha256=sha)


def manifest_to_wire(manifest: Manifest) -> JsonDict:
    return {
        "node": manifest.node,
        "collectedAt": manifest.collected_at,
        "files": [entry_to_wire(e) for e in manifest.files.values()],
    }


def entries_json(entries: Iterable[FileEntry]) -> bytes:
    """The ``files`` list of a manifest as JSON bytes (the server caches it between scans)."""
    return json.dumps([entry_to_wire(e) for e in entries], separators=(",", ":")).encode()


def manifest_json(*, node: str, collected_at: float, files_json: bytes) -> bytes:
    """A manifest document around an already encoded ``files`` list (see :func:`entries_json`);
    the same document as ``json.dumps(manifest_to_wire(...))``."""
    head = json.dumps({"node": node, "collectedAt": collected_at}, separators=(",", ":"))
    return head[:-1].encode() + b',"files":' + files_json + b"}"


def manifest_from_wire(obj: Any) -> Manifest:
    """A manifest as an agent serves it; raises :class:`WireError`."""
    if not isinstance(obj, dict):
        raise WireError("manifest: expected an object")
    node, collected_at, files = obj.get("node"), obj.get("collectedAt"), obj.get("files")
    if not isinstance(node, str) or not node:
        raise WireError("manifest.node: expected a non-empty string")
    if not _is_number(collected_at) or not math.isfinite(collected_at):
        raise WireError("manifest.collectedAt: expected seconds since the epoch")
    if not isinstance(files, list):
        raise WireError("manifest.files: expected a list")
    entries = {}
    sha_ok = _SHA_RE.fullmatch
    for index, item in enumerate(files):
        # The checks of entry_from_wire inlined (a manifest has 100,000s of entries); on any
        # doubt entry_from_wire runs to raise its precise error.
        try:
            path, size, mtime, sha = item["path"], item["size"], item["mtime"], item["sha256"]
            ok = (
                type(path) is str
                and path != ""
                and type(size) is int
                and size >= 0
                and type(mtime) in (float, int)
                and 0 <= mtime < math.inf
                and type(sha) is str
                and sha_ok(sha) is not None
            )
        except (TypeError, KeyError):
            ok = False
        if ok:
            entries[path] = FileEntry(path, size, float(mtime), sha)
        else:
            entry = entry_from_wire(item, where=f"manifest.files[{index}]")
            entries[entry.path] = entry
    return Manifest(node=node, files=entries, collected_at=float(collected_at))


class PullState(StrEnum):
    """The outcome of one file of a pull."""

    DONE = "done"  # downloaded, verified and in place
    FAILED = "failed"  # not in place; ``error`` says why ("corrupt: ...", "truncated: ...")
    SKIPPED = "skipped"  # the target already held this version


@dataclass(frozen=True, slots=True)
class PullRequest:
    """``POST /v1/pull``: fetch ``files`` (the wanted versions) from the agent at ``source``."""

    source: str  # base URL of the source agent
    files: tuple[FileEntry, ...]


@dataclass(frozen=True, slots=True)
class PullResult:
    """One file of a pull."""

    path: str
    state: PullState
    bytes: int = 0  # received over the network for this file (all attempts)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PullReport:
    """The answer to a pull: one result per requested file, in request order."""

    node: str  # the target that pulled
    source: str
    results: tuple[PullResult, ...]

    def count(self, state: PullState) -> int:
        return sum(1 for r in self.results if r.state == state)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.results)

    @property
    def ok(self) -> bool:
        return all(r.state != PullState.FAILED for r in self.results)


def pull_request_to_wire(request: PullRequest) -> JsonDict:
    return {"source": request.source, "files": [entry_to_wire(e) for e in request.files]}


def pull_request_from_wire(obj: Any, *, max_files: int) -> PullRequest:
    """A pull request body; raises :class:`WireError` (more than ``max_files`` files included)."""
    if not isinstance(obj, dict):
        raise WireError("pull request: expected an object")
    source, files = obj.get("source"), obj.get("files")
    if not isinstance(source, str) or not is_agent_url(source):
        raise WireError("pull request.source: expected an http(s) URL of an agent")
    if not isinstance(files, list):
        raise WireError("pull request.files: expected a list")
    if len(files) > max_files:
        raise WireError(
            f"pull request.files: {len(files)} files, more than the limit of {max_files} per pull"
        )
    entries = tuple(entry_from_wire(f, where=f"files[{i}]") for i, f in enumerate(files))
    if len({e.path for e in entries}) != len(entries):
        raise WireError("pull request.files: a path is repeated")
    return PullRequest(source=source.rstrip("/"), files=entries)


def pull_report_to_wire(report: PullReport) -> JsonDict:
    return {
        "node": report.node,
        "source": report.source,
        "done": report.count(PullState.DONE),
        "failed": report.count(PullState.FAILED),
        "skipped": report.count(PullState.SKIPPED),
        "bytes": report.bytes,
        "results": [
            {"path": r.path, "state": r.state.value, "bytes": r.bytes, "error": r.error}
            for r in report.results
        ],
    }


def pull_report_from_wire(obj: Any) -> PullReport:
    if not isinstance(obj, dict):
        raise WireError("pull report: expected an object")
    node, source, results = obj.get("node"), obj.get("source"), obj.get("results")
    if not isinstance(node, str) or not isinstance(source, str) or not isinstance(results, list):
        raise WireError("pull report: expected node, source and results")
    parsed = []
    for index, item in enumerate(results):
        where = f"pull report.results[{index}]"
        if not isinstance(item, dict):
            raise WireError(f"{where}: expected an object")
        path, size, error = item.get("path"), item.get("bytes", 0), item.get("error")
        try:
            state = PullState(str(item.get("state")))
        except ValueError:
            raise WireError(f"{where}.state: expected one of done, failed, skipped") from None
        if not isinstance(path, str) or not _is_int(size) or not isinstance(error, str | None):
            raise WireError(f"{where}: expected path, bytes and error")
        parsed.append(PullResult(path=path, state=state, bytes=size, error=error))
    return PullReport(node=node, source=source, results=tuple(parsed))


def is_agent_url(url: str) -> bool:
    """An ``http(s)://host[:port][/prefix]`` base URL without query, fragment or credentials."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return False
    return (
        parts.scheme in {"http", "https"}
        and bool(parts.hostname)
        and port_ok
        and not parts.query
        and not parts.fragment
        and parts.username is None
    )


def file_url(base_url: str, path: str) -> URL:
    """The URL of a file on an agent, each path component percent-encoded."""
    return URL(base_url.rstrip("/") + FILES_PATH + quote(path, safe="/"), encoded=True)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- the agent client ----------------------------------------------------------------------------


class AgentError(Exception):
    """A call to an agent failed. ``status`` is the HTTP status when there was an answer."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class AgentUnavailable(AgentError):
    """The agent could not be reached, timed out, broke the connection or answered 5xx."""


class AgentAuthError(AgentError):
    """The agent refused our token (401/403)."""


class AgentProtocolError(AgentError):
    """The agent refused the request (4xx) or answered something that is not the protocol."""


class AgentClient:
    """One agent, at ``base_url``, over a caller-owned :class:`aiohttp.ClientSession`."""

    def __init__(self, *, base_url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = bearer_headers(token)
        self._session = session

    async def healthz(self, *, timeout: float = 5.0) -> JsonDict:
        """The agent's health document (no token needed); raises :class:`AgentError`."""
        body = await self._json("GET", URL(self.base_url + HEALTHZ_PATH), timeout=timeout)
        if not isinstance(body, dict):
            raise AgentProtocolError("healthz: expected an object", url=self.base_url)
        return body

    async def fetch_manifest(
        self, *, config: str | Collection[str] | None = None, timeout: float = 30.0
    ) -> Manifest:
        """The agent's manifest: everything, or the games of ``config`` (one or several)."""
        configs = [config] if isinstance(config, str) else sorted(config or ())
        url = URL(self.base_url + MANIFEST_PATH)
        if configs:
            url = url.with_query([("config", c) for c in configs])
        body = await self._json("GET", url, timeout=timeout)
        try:
            return manifest_from_wire(body)
        except WireError as e:
            raise AgentProtocolError(str(e), url=str(url)) from None

    async def pull(
        self, *, source_url: str, files: Sequence[FileEntry], timeout: float = 600.0
    ) -> PullReport:
        """Ask this agent to fetch ``files`` from the agent at ``source_url`` and wait."""
        request = PullRequest(source=source_url, files=tuple(files))
        url = URL(self.base_url + PULL_PATH)
        body = await self._json("POST", url, timeout=timeout, json=pull_request_to_wire(request))
        try:
            return pull_report_from_wire(body)
        except WireError as e:
            raise AgentProtocolError(str(e), url=str(url)) from None

    @contextlib.asynccontextmanager
    async def open_file(
        self,
        path: str,
        *,
        offset: int = 0,
        if_range: str | None = None,
        timeout: aiohttp.ClientTimeout,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``GET /v1/files/<path>`` from byte ``offset``; yields the 200 or 206 response.

        With ``if_range`` (a sha256), the agent answers 200 with the whole file if it no longer
        holds that version. Reading the body may raise :class:`aiohttp.ClientError`.
        """
        url = file_url(self.base_url, path)
        headers = dict(self._headers)
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if if_range:
                headers["If-Range"] = f'"{if_range}"'
        try:
            async with self._session.get(url, headers=headers, timeout=timeout) as response:
                if response.status not in (200, 206):
                    await _raise_for(response, url=str(url))
                yield response
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise AgentUnavailable(f"{url}: {_describe(e)}", url=str(url)) from None

    async def _json(self, method: str, url: URL, *, timeout: float, json: Any = None) -> Any:
        try:
            async with self._session.request(
                method,
                url,
                headers=self._headers,
                json=json,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status != 200:
                    await _raise_for(response, url=str(url))
                raw = await response.read()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise AgentUnavailable(f"{method} {url}: {_describe(e)}", url=str(url)) from None
        try:
            return await _loads(raw)
        except ValueError as e:
            raise AgentProtocolError(f"{url}: not JSON: {e}", url=str(url), status=200) from None


async def _loads(raw: bytes) -> Any:
    """``json.loads``; ValueError for anything that is not JSON, nesting too deep included."""
    try:
        if len(raw) > 1 << 20:  # a big manifest: parse off the event loop
            return await asyncio.to_thread(json.loads, raw)
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


async def _raise_for(response: aiohttp.ClientResponse, *, url: str) -> None:
    """Raise the typed error for a non-success answer, with the agent's message if any."""
    status = response.status
    try:
        text = (await response.content.read(4096)).decode("utf-8", "replace")
        message = str(json.loads(text).get("error", text))
    except (ValueError, AttributeError, aiohttp.ClientError, TimeoutError):
        message = response.reason or ""
    message = f"{url}: {status} {message}".strip()
    if status in (401, 403):
        raise AgentAuthError(message, url=url, status=status)
    if status >= 500:
        raise AgentUnavailable(message, url=url, status=status)
    raise AgentProtocolError(message, url=url, status=status)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


# --- the Kubernetes API (advertising the endpoint) -----------------------------------------------

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"


class KubeError(RuntimeError):
    """No usable credentials, or the API server refused the call."""


@dataclass(frozen=True, slots=True)
class KubeAccess:
    """Where the API server is and how to authenticate: a bearer token or a client certificate."""

    server: str
    token: str | None = None
    ca_pem: str | None = None  # PEM text of the CA bundle; None: the system's trust store
    insecure: bool = False  # insecure-skip-tls-verify
    client_cert_pem: str | None = None
    client_key_pem: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings for an ``https`` server (None for plain ``http``)."""
        if not self.server.startswith("https"):
            return None
        context = ssl.create_default_context(cadata=self.ca_pem)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_pem and self.client_key_pem:
            _load_client_cert(context, self.client_cert_pem, self.client_key_pem)
        return context


def load_kubeconfig(path: Path, *, context: str | None = None) -> KubeAccess:
    """The server and credentials of ``context`` (default: the current one) of a kubeconfig.

    Supports token, tokenFile, certificate-authority(-data), client-certificate(-data) with
    client-key(-data) and insecure-skip-tls-verify; exec and auth-provider plugins are not.
    """
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise KubeError(f"cannot read the kubeconfig {path}: {e}") from None
    if not isinstance(config, dict):
        raise KubeError(f"{path}: not a kubeconfig")
    name = context or config.get("current-context")
    ctx = _named(config, "contexts", name, "context", path)
    cluster = _named(config, "clusters", ctx.get("cluster"), "cluster", path)
    user = _named(config, "users", ctx.get("user"), "user", path) if ctx.get("user") else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise KubeError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    base = path.parent

    def pem(data_key: str, file_key: str, where: Mapping[str, Any]) -> str | None:
        if where.get(data_key):
            return base64.b64decode(where[data_key]).decode()
        if where.get(file_key):
            return (base / str(where[file_key])).read_text()
        return None

    try:
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = (base / str(user["tokenFile"])).read_text().strip()
        return KubeAccess(
            server=server.rstrip("/"),
            token=str(token) if token else None,
            ca_pem=pem("certificate-authority-data", "certificate-authority", cluster),
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
            client_cert_pem=pem("client-certificate-data", "client-certificate", user),
            client_key_pem=pem("client-key-data", "client-key", user),
        )
    except (OSError, ValueError) as e:
        raise KubeError(f"{path}: unreadable credentials: {e}") from None


def load_in_cluster(
    *, env: Mapping[str, str], service_account_dir: Path = SERVICE_ACCOUNT_DIR
) -> KubeAccess:
    """The pod's service account: ``KUBERNETES_SERVICE_HOST``/``_PORT``, its token and CA."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    try:
        token = (service_account_dir / "token").read_text().strip()
        ca = (service_account_dir / "ca.crt").read_text()
    except OSError as e:
        raise KubeError(f"cannot read the service account: {e}") from None
    return KubeAccess(server=f"https://{host}:{port}", token=token, ca_pem=ca)


async def patch_node_annotations(
    *,
    session: aiohttp.ClientSession,
    access: KubeAccess,
    node: str,
    annotations: Mapping[str, str],
    timeout: float = 10.0,
) -> None:
    """Merge ``annotations`` into Node ``node``'s metadata; raises :class:`KubeError`."""
    url = f"{access.server}/api/v1/nodes/{quote(node, safe='')}"
    headers = {"Content-Type": MERGE_PATCH, "Accept": "application/json"}
    if access.token:
        headers["Authorization"] = f"Bearer {access.token}"
    body = json.dumps({"metadata": {"annotations": dict(annotations)}})
    try:
        async with session.patch(
            url,
            data=body,
            headers=headers,
            ssl=access.ssl_context() or True,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status != 200:
                text = (await response.content.read(2048)).decode("utf-8", "replace")
                raise KubeError(f"PATCH node {node}: {response.status} {text}")
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as e:
        raise KubeError(f"PATCH node {node}: {_describe(e)}") from None


def _named(
    config: Mapping[str, Any], section: str, name: Any, key: str, path: Path
) -> Mapping[str, Any]:
    for item in config.get(section) or ():
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(key) or {}
            if isinstance(value, dict):
                return value
    raise KubeError(f"{path}: no {section[:-1]} named {name!r}")


def _load_client_cert(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    # ssl can load a certificate chain only from files: write them to a private temp dir.
    with tempfile.TemporaryDirectory(prefix="ringrift-agent-") as directory:
        cert, key = Path(directory) / "client.crt", Path(directory) / "client.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key_pem)
        cert.write_text(cert_pem)
        context.load_cert_chain(cert, key)
